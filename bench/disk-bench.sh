#!/usr/bin/env bash
# disk-bench.sh - receive to disk: server CPU per GB and throughput of
# HTTP uploads (curl -T) to `zcnet ingest`, buffered and --direct, to
# rw-server (bench/rw-server.c: read() + write(), buffered and O_DIRECT)
# and to nginx (Debian's package) with WebDAV PUT, all writing to the
# same filesystem.
#
# usage: bench/disk-bench.sh --runs N --bytes SIZE --out FILE.tsv
#                            [--dir DIR] [--build BUILD] [--hold-page-reporting]
#   SIZE   bytes, or with a K, M, G suffix (powers of 1024)
#   DIR    a fresh directory is made inside it (default /var/tmp); it
#          needs about 3 x SIZE free and must be a real disk (O_DIRECT)
#   BUILD  the build directory holding zcnet and rw-server (default build)
#   --hold-page-reporting  on a VM whose kernel hands freed memory back
#          to the host at once (page_reporting min_free_ms 0), keep it
#          for 5 minutes instead while this runs; restored on exit
#
# The runs are interleaved (run 1 of every system, then run 2, ...) so
# that a noisy machine's drift hits every system alike, and each run
# starts one system later than the one before, so that no system always
# follows the same one (on a VM, memory a system frees is slow to reuse
# once the host has taken it back: whoever comes next pays). Each run uploads
# one random file (on /dev/shm, so the client is cheap) with curl; the
# server's CPU is utime + stime of all its threads (nginx: master and
# workers) from /proc/PID/stat just before and after the upload, wall
# time is curl's. An uncounted warm-up upload per system comes first.
# Every run checks the HTTP status and the landed size, the warm-up and
# the first counted run also the sha256. Landed files are deleted
# between runs. FILE.tsv gets one row per system (medians, min, max);
# stdout a table with ratios; stderr progress. Everything this script
# starts or creates goes away on exit.
set -uo pipefail

systems=(zcnet-ingest zcnet-ingest-direct rw-server rw-server-direct nginx-webdav)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs= bytes_arg= out= parent=/var/tmp build=$repo/build hold=

usage() {
	sed -n 's/^# \{0,1\}//; 8,16p' "${BASH_SOURCE[0]}" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=${2:-}; shift 2 ;;
	--bytes) bytes_arg=${2:-}; shift 2 ;;
	--out) out=${2:-}; shift 2 ;;
	--dir) parent=${2:-}; shift 2 ;;
	--build) build=${2:-}; shift 2 ;;
	--hold-page-reporting) hold=1; shift ;;
	*) usage ;;
	esac
done
[ -n "$runs" ] && [ -n "$bytes_arg" ] && [ -n "$out" ] || usage
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "disk-bench: bad --runs $runs" >&2; exit 2; }

log() { printf 'disk-bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# to_bytes 64M -> 67108864
to_bytes() {
	local n=${1%[KkMmGgTt]} s=${1:${#1}-1}
	[[ $n =~ ^[0-9]+$ ]] || return 1
	case $s in
	[Kk]) echo $((n << 10)) ;; [Mm]) echo $((n << 20)) ;;
	[Gg]) echo $((n << 30)) ;; [Tt]) echo $((n << 40)) ;;
	*) echo "$n" ;;
	esac
}
bytes=$(to_bytes "$bytes_arg") && [ "$bytes" -gt 0 ] ||
	die "bad --bytes $bytes_arg"

zcnet=$build/zcnet rwserver=$build/rw-server
[ -x "$zcnet" ] && [ -x "$rwserver" ] ||
	die "$build/zcnet or $build/rw-server missing: build first (make build)"

# ---------------------------------------------------------------------
# clean-up: every process started, every file made

tmp= tgt= src= pids=() reporting_was=
reporting=/sys/module/page_reporting/parameters/min_free_ms
cleanup() {
	local p i alive
	if [ -n "$reporting_was" ] && ! echo "$reporting_was" >"$reporting" 2>/dev/null; then
		log "could not restore $reporting to $reporting_was"
	fi
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	for ((i = 0; i < 100; i++)); do # up to 5 s to stop, then SIGKILL
		alive=
		for p in "${pids[@]}"; do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		[ -z "$alive" ] && break
		sleep 0.05
	done
	for p in "${pids[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	[ -n "$src" ] && rm -f "$src"
	[ -n "$tgt" ] && rm -rf "$tgt"
	[ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------
# the packages, the disk, the file to upload

bash "$repo/scripts/deps.sh" nginx >&2 || log "could not install nginx and curl (see above)"
have_curl=$(command -v curl || true)
nginx_bin=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)

[ -d "$parent" ] || die "--dir $parent: no such directory"
tgt=$(mktemp -d "$parent/zcnet-disk-bench.XXXXXX") || die "cannot create a directory in $parent"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcnet-disk-bench.XXXXXX") || die "cannot create a temporary directory"
fstype=$(stat -f -c %T "$tgt")
free=$(($(df -P -k "$tgt" | awk 'NR == 2 { print $4 }') * 1024))
if [ "$free" -lt $((3 * bytes)) ]; then
	die "$parent has $((free >> 20)) MiB free, needs 3 x $((bytes >> 20)) MiB; use --dir or a smaller --bytes"
fi
[ "$fstype" = tmpfs ] && log "warning: $tgt is on tmpfs, not a disk: the figures say nothing about disks"

shm_free=$(($(df -P -k /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }') * 1024))
if [ "${shm_free:-0}" -gt $((bytes + (256 << 20))) ]; then
	src=$(mktemp /dev/shm/zcnet-disk-bench.XXXXXX)
else
	src=$tgt/.source # in the page cache after it is written
fi
log "writing $bytes random bytes to $src"
head -c "$bytes" /dev/urandom >"$src" || die "cannot write $src"
src_sha=$(sha256sum <"$src" | cut -d' ' -f1)

# ---------------------------------------------------------------------
# the servers

declare -A port pidlist status cmd
for s in "${systems[@]}"; do
	status[$s]=ok
	mkdir -p "$tgt/$s"
done

# wait_port LOGFILE PID: the port a server says it listens on
wait_port() {
	local i p
	for ((i = 0; i < 100; i++)); do
		p=$(sed -n 's/.*listening on [0-9.]*:\([0-9][0-9]*\).*/\1/p' "$1" | head -n1)
		[ -n "$p" ] && { echo "$p"; return 0; }
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# start_listed SYSTEM COMMAND...: a server that prints its port
start_listed() {
	local s=$1 p
	shift
	cmd[$s]="$*"
	: >"$tmp/$s.log" # before the child opens it: wait_port reads it
	"$@" 2>"$tmp/$s.log" &
	p=$!
	pids+=("$p")
	pidlist[$s]=$p
	if ! port[$s]=$(wait_port "$tmp/$s.log" "$p"); then
		status[$s]="failed:server did not start"
		log "$s did not start:"
		tail -n 5 "$tmp/$s.log" >&2
	fi
}

# A free loopback port for nginx, which cannot pick one itself.
free_port() {
	local p i
	for ((i = 0; i < 50; i++)); do
		p=$((20000 + RANDOM % 40000))
		[ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return 0; }
	done
	return 1
}

# nginx with WebDAV PUT, not a daemon, its own configuration, pid file,
# logs and temporary directories; the request bodies' temporary files
# are on the target's filesystem, so that storing one is a rename.
start_nginx() {
	local s=nginx-webdav p n i conf=$tmp/nginx/nginx.conf user=
	if [ -z "$nginx_bin" ]; then
		status[$s]="failed:nginx not installed"
		return
	fi
	mkdir -p "$tmp/nginx" "$tgt/nginx-body"
	[ "$(id -u)" -eq 0 ] && user="user root root;"
	for ((n = 0; n < 5; n++)); do
		p=$(free_port) || break
		cat >"$conf" <<-EOF
			$user
			daemon off;
			worker_processes 1;
			pid $tmp/nginx/nginx.pid;
			error_log $tmp/nginx/error.log warn;
			events { worker_connections 64; }
			http {
				access_log off;
				client_body_temp_path $tgt/nginx-body;
				proxy_temp_path $tmp/nginx/proxy;
				fastcgi_temp_path $tmp/nginx/fastcgi;
				uwsgi_temp_path $tmp/nginx/uwsgi;
				scgi_temp_path $tmp/nginx/scgi;
				client_max_body_size 0;
				client_body_buffer_size 256k;
				server {
					listen 127.0.0.1:$p;
					root $tgt/$s;
					location / {
						dav_methods PUT;
						create_full_put_path on;
					}
				}
			}
		EOF
		cmd[$s]="$nginx_bin -p $tmp/nginx -e $tmp/nginx/error.log -c $conf"
		"$nginx_bin" -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$conf" \
			2>"$tmp/$s.log" &
		pidlist[$s]=$!
		pids+=("$!")
		for ((i = 0; i < 50; i++)); do
			[ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] &&
				[ -n "$(pgrep -P "${pidlist[$s]}")" ] && break
			kill -0 "${pidlist[$s]}" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "${pidlist[$s]}" 2>/dev/null && [ -n "$(pgrep -P "${pidlist[$s]}")" ]; then
			port[$s]=$p
			return
		fi
		kill "${pidlist[$s]}" 2>/dev/null # a port taken meanwhile: again
	done
	status[$s]="failed:nginx did not start"
	log "nginx did not start:"
	tail -n 5 "$tmp/$s.log" "$tmp/nginx/error.log" >&2 2>/dev/null
}

start_listed zcnet-ingest "$zcnet" ingest --listen 127.0.0.1:0 --dir "$tgt/zcnet-ingest"
start_listed zcnet-ingest-direct "$zcnet" ingest --listen 127.0.0.1:0 \
	--dir "$tgt/zcnet-ingest-direct" --direct
start_listed rw-server "$rwserver" --listen 127.0.0.1:0 --dir "$tgt/rw-server"
start_listed rw-server-direct "$rwserver" --listen 127.0.0.1:0 \
	--dir "$tgt/rw-server-direct" --direct
start_nginx

if [ -z "$have_curl" ]; then
	for s in "${systems[@]}"; do
		[ "${status[$s]}" = ok ] && status[$s]="failed:curl not installed"
	done
fi

# ---------------------------------------------------------------------
# the VM's memory
#
# With free page reporting a guest hands freed memory back to the host;
# touching it again faults on the host. Every upload fills fresh page
# cache, so whether the previous run's pages were handed back in between
# decides much of what the copy into the page cache costs: 0.3 or 2 s/GB
# for the same server. Held back, the spread narrows; it does not end.
page_reporting=absent
if [ -r "$reporting" ]; then
	was=$(cat "$reporting")
	page_reporting="on (min_free_ms $was)"
	if [ -n "$hold" ] && [ "$was" = 300000 ]; then
		# Another run holds it and will restore it: leave it alone.
		page_reporting="held (min_free_ms 300000, by another run)"
	elif [ -n "$hold" ] && [ -n "$was" ]; then
		reporting_was=$was # first: an interrupt from here on restores
		if echo 300000 >"$reporting" 2>/dev/null; then
			page_reporting="held (min_free_ms $was -> 300000 during the runs)"
		else
			reporting_was=
			log "cannot hold page reporting (not root?): figures will swing"
		fi
	fi
fi
log "free page reporting: $page_reporting"

# ---------------------------------------------------------------------
# the runs

tck=$(getconf CLK_TCK)

# cpu_ticks PID...: utime + stime of each process, all threads
cpu_ticks() {
	local p line f t=0
	for p in "$@"; do
		read -r line <"/proc/$p/stat" 2>/dev/null || continue
		f=(${line##*) }) # fields from the 3rd on: comm may hold spaces
		t=$((t + f[11] + f[12]))
	done
	echo "$t"
}

# the processes whose CPU counts: the server, and nginx's workers
server_pids() {
	echo "${pidlist[$1]}"
	[ "$1" = nginx-webdav ] && pgrep -P "${pidlist[$1]}"
}

# one_run SYSTEM RUN: appends "gbps cpu_s_per_gb" to $tmp/SYSTEM.runs;
# run 0 is the warm-up, checked and not counted
one_run() {
	local s=$1 r=$2 name=upload-$2 url c0 c1 res code secs landed sz
	local -a ps
	url=http://127.0.0.1:${port[$s]}/$name
	landed=$tgt/$s/$name
	mapfile -t ps < <(server_pids "$s")
	c0=$(cpu_ticks "${ps[@]}")
	res=$(curl -sS -o "$tmp/$s.body" -w '%{http_code} %{time_total}' -T "$src" "$url" 2>"$tmp/$s.curl")
	c1=$(cpu_ticks "${ps[@]}")
	read -r code secs <<<"$res"
	if [ "$code" != 201 ] && [ "$code" != 204 ]; then
		status[$s]="failed:run $r: HTTP ${code:-none} $(head -c 80 "$tmp/$s.curl" | tr '\t\n' '  ')"
		return
	fi
	sz=$(stat -c %s "$landed" 2>/dev/null)
	if [ "$sz" != "$bytes" ]; then
		status[$s]="failed:run $r: landed ${sz:-no} bytes"
		return
	fi
	if [ "$r" -le 1 ] && [ "$(sha256sum <"$landed" | cut -d' ' -f1)" != "$src_sha" ]; then
		status[$s]="failed:run $r: sha256 differs"
		return
	fi
	[ "$r" -eq 0 ] && return
	awk -v b="$bytes" -v t="$secs" -v c=$((c1 - c0)) -v hz="$tck" \
		'BEGIN { printf "%.6f %.6f\n", b / t / 1e9, c / hz / (b / 1e9) }' >>"$tmp/$s.runs"
	log "$(printf 'run %d %-20s %s' "$r" "$s" "$(tail -n1 "$tmp/$s.runs" |
		awk '{ printf "%.3f GB/s  %.3f CPU s/GB", $1, $2 }')")"
}

# Run 0 warms up: the servers' buffers and pipes, and page cache memory
# the machine has not touched yet (slow to fault in on a VM).
for ((r = 0; r <= runs; r++)); do
	for ((k = 0; k < ${#systems[@]}; k++)); do
		s=${systems[(k + r) % ${#systems[@]}]}
		[ "${status[$s]}" = ok ] || continue
		one_run "$s" "$r"
		# Deleting drops the dirty pages with the file: no writeback
		# of this run runs into the next (a sync would wait for the
		# whole filesystem, whatever else writes to it).
		rm -f "$tgt/$s"/* 2>/dev/null
	done
done

# ---------------------------------------------------------------------
# the results

# stats FILE COLUMN: median min max
stats() {
	awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.3f %.3f %.3f\n", m, v[1], v[NR]
		}'
}

declare -A gmed cmed
{
	printf 'system\tgbps_med\tgbps_min\tgbps_max\tcpu_s_per_gb_med\tcpu_s_per_gb_min\tcpu_s_per_gb_max\truns\tstatus\n'
	for s in "${systems[@]}"; do
		if [ "${status[$s]}" != ok ] || [ ! -s "$tmp/$s.runs" ]; then
			[ "${status[$s]}" = ok ] && status[$s]="failed:no run"
			printf '%s\t-\t-\t-\t-\t-\t-\t%s\t%s\n' "$s" "$runs" "${status[$s]//$'\t'/ }"
			continue
		fi
		read -r gm gl gh <<<"$(stats "$tmp/$s.runs" 1)"
		read -r cm cl ch <<<"$(stats "$tmp/$s.runs" 2)"
		gmed[$s]=$gm cmed[$s]=$cm
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\tok\n' "$s" "$gm" "$gl" "$gh" "$cm" "$cl" "$ch" \
			"$(wc -l <"$tmp/$s.runs")"
	done
} >"$out"

# ratio A B: A / B, or - when either is missing
ratio() {
	[ -n "$1" ] && [ -n "$2" ] || { echo -; return; }
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
}

echo "Receive to disk: $runs run(s) of $bytes bytes per system, interleaved; medians."
echo "Target: $tgt ($fstype); source: $src; nginx: worker_processes 1."
echo "Free page reporting (VM memory handed back to the host): $page_reporting."
echo "CPU = server utime+stime per 10^9 bytes; x rw = vs rw-server in the same mode (buffered/direct)."
printf '%-20s %8s %10s %8s %8s %8s %8s  %s\n' system GB/s 'CPU s/GB' 'CPU x rw' 'CPU x ng' \
	'GB/s x rw' 'GB/s x ng' status
for s in "${systems[@]}"; do
	base=rw-server
	[[ $s == *-direct ]] && base=rw-server-direct
	printf '%-20s %8s %10s %8s %8s %8s %8s  %s\n' "$s" "${gmed[$s]:--}" "${cmed[$s]:--}" \
		"$(ratio "${cmed[$s]:-}" "${cmed[$base]:-}")" \
		"$(ratio "${cmed[$s]:-}" "${cmed[nginx-webdav]:-}")" \
		"$(ratio "${gmed[$s]:-}" "${gmed[$base]:-}")" \
		"$(ratio "${gmed[$s]:-}" "${gmed[nginx-webdav]:-}")" "${status[$s]}"
done
echo
echo "Commands:"
for s in "${systems[@]}"; do
	echo "  $s: ${cmd[$s]:-(not started)}"
done
echo "  client: curl -sS -T $src http://127.0.0.1:PORT/upload-RUN"
[ -f "$tmp/nginx/nginx.conf" ] && { echo "nginx.conf:"; sed 's/^/    /' "$tmp/nginx/nginx.conf"; }
echo "TSV: $out"
exit 0
