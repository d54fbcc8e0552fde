#!/usr/bin/env bash
# report.sh - run every zcnet-bench section, the disk benchmark if there is
# one, draw the charts with gnuplot and write bench/results/REPORT.md.
# `make bench` runs it in full, `make bench-quick` with --quick.
#
# usage: bench/report.sh [--quick] [--build DIR] [--out DIR]
#
# Every figure in the report comes from this run. Progress goes to stderr;
# each section's own output and its TSV table go to bench/results/raw/
# (ignored by git); REPORT.md and the PNG charts are meant to be committed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=$root/build
out=$here/results
mode=full
while [ $# -gt 0 ]; do
	case $1 in
	--quick) mode=quick ;;
	--build)
		build=$2
		shift
		;;
	--out)
		out=$2
		shift
		;;
	*)
		echo "usage: bench/report.sh [--quick] [--build DIR] [--out DIR]" >&2
		exit 2
		;;
	esac
	shift
done
case $build in /*) ;; *) build=$root/$build ;; esac
case $out in /*) ;; *) out=$root/$out ;; esac

bench=$build/zcnet-bench
raw=$out/raw
disk_script=$here/disk-bench.sh
direct_dir=/var/tmp
hold_ms=1	# zcnet-bench's pool curve: HOLD_MS

# Full: medians of 5 (of 9 for the disk, whose baselines swing most);
# quick: 3 runs, fewer bytes and points, under 2 min.
if [ "$mode" = full ]; then
	runs=5 bytes=2G scale_bytes=1G curve_bytes=1G disk_bytes=1G disk_runs=9
	conns_list="1000 10000" streams=1,10,100,1000
	pools=1,2,4,8,16,64 pieces=4,16,64,256,1024 chunks=4,8,16,32,64,256
else
	runs=3 bytes=256M scale_bytes=256M curve_bytes=128M disk_bytes=256M disk_runs=3
	conns_list=1000 streams=1,10,100
	pools=1,4,16 pieces=4,64,1024 chunks=4,64
fi

say() { echo "bench: $*" >&2; }

[ -x "$bench" ] || {
	say "no $bench: run \`make build\` first"
	exit 1
}

report_tmp=
cleanup() { [ -z "$report_tmp" ] || rm -f "$report_tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$raw"
mkdir -p "$raw"
rm -f "$out"/*.png

commands=()		# every command this run ran, for the report
failures=()		# sections that did not finish, with why

# run_logged LOG CMD...: run CMD, its output on stderr and in raw/LOG.
run_logged() {
	local log=$1
	shift
	commands+=("$*")
	say "running: $*"
	if "$@" 2>&1 | tee "$raw/$log" >&2; then
		return 0
	fi
	failures+=("$log: \`$*\` exited with status ${PIPESTATUS[0]}; see raw/$log")
	say "FAILED: $*"
	return 1
}

section() {
	local name=$1 log=$2
	shift 2
	run_logged "$log" "$bench" --section "$name" --tsv "$raw" "$@" || true
}

# ------------------------------------------------------------------
# Charts
# ------------------------------------------------------------------

shared_head=$'system\tgbps_med\tgbps_min\tgbps_max\tcpu_s_per_gb_med\tcpu_s_per_gb_min\tcpu_s_per_gb_max\truns\tstatus'

# Does FILE exist with the shared header?
shared_tsv() { [ -f "$1" ] && [ "$(head -n1 "$1")" = "$shared_head" ]; }

# The chart rows of a shared TSV, tagged with GROUP (a colour) and ok or
# failed: a failed system stays, as a zero bar labelled "failed".
chart_rows() {
	shared_tsv "$1" || return 0
	awk -F'\t' -v OFS='\t' -v g="$2" 'NR > 1 {
		ok = $9 == "ok" ? "ok" : "failed"
		if (ok != "ok") { $1 = $1 " (failed)"; for (i = 2; i <= 7; i++) $i = 0 }
		print $1, $2, $3, $4, $5, $6, $7, g, ok
	}' "$1"
}

# Column COL (2: GB/s, 5: CPU s/GB) of SYSTEM's row in a shared TSV, or
# nothing if it failed or is absent.
value_of() {
	[ -f "$1" ] || return 0
	awk -F'\t' -v s="$2" -v c="$3" '$1 == s && $9 == "ok" { print $c }' "$1"
}

gp_head() {
	cat <<GP
set terminal pngcairo size 1000,600 font "sans,10"
set output "$out/$1"
set datafile separator "\t"
set datafile missing "-"
set termoption noenhanced
set grid ytics
set key outside top center horizontal
set offsets graph 0.04, graph 0.04, 0, 0
GP
}

# GB/s (COL 2) or CPU s/GB (COL 5) per system as bars with min-max
# whiskers; the machine's limit as a dashed line.
bar_chart() {
	local png=$1 col=$2 ylabel=$3 title=$4 lim=$5 limname=$6
	local n limplot="NaN notitle" disk="NaN notitle"
	n=$(wc -l <"$raw/chart-systems.dat")
	[ "$n" -gt 0 ] || return 0
	[ -z "$lim" ] || limplot="$lim with lines dt 2 lw 2 lc rgb \"#c00000\" title \"$limname\""
	! awk -F'\t' '$8 == 2 { f = 1 } END { exit !f }' "$raw/chart-systems.dat" ||
		disk='NaN with boxes lc 2 title "receive to disk"'
	{
		gp_head "$png"
		cat <<GP
set title "$title"
set ylabel "$ylabel"
set offsets 0, 0, 0, 0
set xrange [-0.6:$n - 0.4]
set yrange [0:*]
set xtics rotate by 25 right nomirror
set style fill solid 0.7 border -1
plot "$raw/chart-systems.dat" using 0:$col:(0.7):8:xtic(1) with boxes lc variable notitle, \
     "" using 0:$((col + 1)):(0):(column($((col + 2))) - column($((col + 1)))) with vectors heads size 0.08,90 lc rgb "black" notitle, \
     "" using 0:(0):(strcol(9) eq "ok" ? sprintf("%.3g", column($col)) : "failed") with labels offset 0,0.8 notitle, \
     NaN with boxes lc 1 title "receive to memory", \
     $disk, \
     $limplot
GP
	} >"$raw/${png%.png}.gp"
	gnuplot "$raw/${png%.png}.gp"
}

memory_chart() {
	local f=$raw/memory.tsv
	[ -f "$f" ] || return 0
	awk -F'\t' 'NR > 1 { v[$1 "\t" $2] = $5; if (!($1 in seen)) { seen[$1] = 1; c[++n] = $1 } }
		END { for (i = 1; i <= n; i++)
			print c[i] " connections\t" v[c[i] "\tzcnet"] "\t" v[c[i] "\tepoll 64 KiB"] }' \
		"$f" >"$raw/chart-memory.dat"
	{
		gp_head memory.png
		cat <<GP
set title "User memory (RSS) per idle connection, one 64-byte hello each"
set ylabel "bytes per connection (log scale)"
set offsets 0, 0, 0, 0
set logscale y
set yrange [10:*]
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.7 border -1
plot "$raw/chart-memory.dat" using 2:xtic(1) title "zcnet: one shared 16 MiB pool", \
     "" using 3 title "epoll server: 64 KiB buffer per connection", \
     "" using (\$0 - 1.0/6):2:(sprintf("%d B", \$2)) with labels offset 0,0.8 notitle, \
     "" using (\$0 + 1.0/6):3:(sprintf("%d B", \$3)) with labels offset 0,0.8 notitle
GP
	} >"$raw/memory.gp"
	gnuplot "$raw/memory.gp"
}

# A curve TSV: x in column 1, GB/s in 3-5, CPU s/GB in 6-8, stalls in 11.
curve_chart() {
	local png=$1 f=$2 title=$3 xlabel=$4 y2col=$5 y2label=$6
	[ -f "$f" ] || return 0
	{
		gp_head "$png"
		cat <<GP
set title "$title"
set xlabel "$xlabel"
set logscale x 2
set ylabel "GB/s (median, bars: min-max)"
set yrange [0:*]
set y2label "$y2label"
set y2range [0:*]
set ytics nomirror
set y2tics
plot "$f" skip 1 using 1:3:4:5 with yerrorlines lw 2 pt 7 title "throughput", \
     "" skip 1 using 1:$y2col axes x1y2 with linespoints lw 2 pt 5 dt 2 title "$y2label"
GP
	} >"$raw/${png%.png}.gp"
	gnuplot "$raw/${png%.png}.gp"
}

# scale.tsv split by system: a line joins only one system's points.
scale_chart() {
	local f=$raw/scale.tsv s sys i
	local names=("zcnet uring" "recv() 256 KiB")
	local titles=("zcnet uring" "recv(), a thread per stream")
	[ -f "$f" ] || return 0
	for i in 0 1; do
		awk -F'\t' -v s="${names[$i]}" 'NR > 1 && $2 == s' "$f" >"$raw/chart-scale-$i.dat"
	done
	{
		gp_head scale.png
		echo 'set multiplot layout 1,2 title "Aggregate receive over N concurrent loopback streams (median, bars: min-max)"'
		echo 'set logscale x 10'
		echo 'set xlabel "concurrent streams"'
		echo 'set yrange [0:*]'
		echo 'set key inside top left vertical'
		for s in 3 6; do
			if [ $s = 3 ]; then
				echo 'set ylabel "GB/s"'
			else
				echo 'set ylabel "receiver CPU s/GB"'
			fi
			sys=()
			for i in 0 1; do
				sys+=("\"$raw/chart-scale-$i.dat\" using 1:$s:$((s + 1)):$((s + 2)) with yerrorlines lw 2 pt $((7 - 2 * i)) title \"${titles[$i]}\"")
			done
			echo "plot ${sys[0]}, ${sys[1]}"
		done
		echo 'unset multiplot'
	} >"$raw/scale.gp"
	gnuplot "$raw/scale.gp"
}

draw_charts() {
	local m_gbps m_cpu d_gbps d_lim="" c_lim="" t_lim=""
	if ! command -v gnuplot >/dev/null; then
		failures+=("charts: gnuplot is not installed (Debian: gnuplot-nox)")
		return 0
	fi
	{
		chart_rows "$raw/recv.tsv" 1
		chart_rows "$raw/disk.tsv" 2
	} >"$raw/chart-systems.dat"
	m_gbps=$(value_of "$raw/limits.tsv" "memcpy, 1 core" 2)
	m_cpu=$(value_of "$raw/limits.tsv" "memcpy, 1 core" 5)
	d_gbps=$(value_of "$raw/limits.tsv" "O_DIRECT write, $direct_dir" 2)
	[ -z "$m_gbps" ] || t_lim="memcpy, 1 core: $m_gbps GB/s"
	[ -z "$m_cpu" ] || c_lim="one memcpy of every byte: $m_cpu s/GB"
	[ -z "$d_gbps" ] || d_lim="O_DIRECT write to $direct_dir: $d_gbps GB/s"
	bar_chart throughput.png 2 "GB/s (10^9 bytes/s)" \
		"Throughput per system, median of $runs runs, bars: min-max ($mode run; $t_lim)" \
		"$d_gbps" "$d_lim"
	bar_chart cpu.png 5 "receiver CPU s/GB (user+sys per 10^9 bytes)" \
		"Receiver CPU per GB, median of $runs runs, bars: min-max ($mode run)" \
		"$m_cpu" "$c_lim"
	memory_chart
	curve_chart backpressure.png "$raw/pool.tsv" \
		"Backpressure: zcnet uring, one stream, each piece held $hold_ms ms" \
		"pool size, MiB" 11 "stalls per run (median)"
	curve_chart piece.png "$raw/piece.tsv" \
		"zcnet uring, one stream, 16 MiB pool: piece size" \
		"piece size, KiB" 6 "receiver CPU s/GB (median)"
	scale_chart
}

# ------------------------------------------------------------------
# REPORT.md
# ------------------------------------------------------------------

version_of() {
	local v
	if ! command -v "$1" >/dev/null; then
		echo "not installed"
		return
	fi
	case $1 in
	nginx) v=$(nginx -v 2>&1) ;;
	gcc | iperf3) v=$("$1" --version 2>&1 | head -n1) ;;
	curl) v=$(curl --version | awk '{ print $1, $2; exit }') ;;
	gnuplot) v=$(gnuplot --version) ;;
	esac
	echo "${v:-unknown}"
}

machine_md() {
	local cpu mem os fs
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
	os=$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)
	fs=$(df -T "$direct_dir" | awk 'NR == 2 { print $2 " on " $1 }')
	cat <<MD
| | |
|---|---|
| kernel | $(uname -r) ($(uname -m)) |
| CPU | ${cpu:-unknown}, $(nproc) online |
| memory | $mem |
| system | $os |
| $direct_dir | $fs |
| load average (1, 5, 15 min) | $load_start at the start, $load_end at the end |
| zcnet | $("$build/zcnet" --version 2>/dev/null || echo "?"), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")$(git -C "$root" diff --quiet HEAD -- . ':!bench/results' 2>/dev/null || echo " with local changes") |

| peer or tool | version |
|---|---|
| iperf3 | $(version_of iperf3) |
| nginx | $(version_of nginx) |
| curl | $(version_of curl) |
| gnuplot | $(version_of gnuplot) |
| liburing | $(dpkg-query -W -f='${Version}' liburing-dev 2>/dev/null || echo "not installed") (liburing-dev) |
| gcc | $(version_of gcc) |
MD
}

# A shared-format TSV as a table: median (min-max), ratios to BASE's
# medians, throughput as a share of LIMIT GB/s (LIMNAME).
systems_md() {
	local f=$1 base=$2 lim=$3 limname=$4
	if ! shared_tsv "$f"; then
		echo "No table: $(basename "$f") is missing or has not the shared header."
		return
	fi
	awk -F'\t' -v base="$base" -v lim="$lim" -v limname="$limname" '
	NR == 1 { next }
	{ row[++n] = $0; if ($1 == base && $9 == "ok") { bg = $2; bc = $5 } }
	function ratio(v, b) { return b > 0 ? sprintf(" %.2f |", v / b) : " - |" }
	END {
		vs = base == "" ? "" : " vs " base " |"
		of = limname == "" ? "" : " of " limname " |"
		printf "| system | GB/s median (min-max) |%s%s CPU s/GB median (min-max) |%s runs | status |\n", vs, of, vs
		printf "|---|---|%s%s---|%s---|---|\n", vs == "" ? "" : "---|", of == "" ? "" : "---|", vs == "" ? "" : "---|"
		for (i = 1; i <= n; i++) {
			split(row[i], f, "\t")
			if (f[9] != "ok") {
				printf "| %s | - |%s%s - |%s - | **%s** |\n", f[1], vs == "" ? "" : " - |",
					of == "" ? "" : " - |", vs == "" ? "" : " - |", f[9]
				continue
			}
			printf "| %s | %.2f (%.2f-%.2f) |%s%s %.3f (%.3f-%.3f) |%s %s | ok |\n",
				f[1], f[2], f[3], f[4], vs == "" ? "" : ratio(f[2], bg),
				(of == "" ? "" : (lim > 0 ? sprintf(" %.0f%% |", 100 * f[2] / lim) : " - |")),
				f[5], f[6], f[7], vs == "" ? "" : ratio(f[5], bc), f[8]
		}
	}' "$f"
}

curve_md() {
	local f=$1
	if [ ! -f "$f" ]; then
		echo "No table: $(basename "$f") was not written (the section failed)."
		return
	fi
	awk -F'\t' '
	NR == 1 { printf "| %s | system | GB/s median (min-max) | CPU s/GB median (min-max) | stalls median (min-max) | runs | status |\n|---|---|---|---|---|---|---|\n", $1; next }
	$10 != "ok" { printf "| %s | %s | - | - | - | - | **%s** |\n", $1, $2, $10; next }
	{ printf "| %s | %s | %.2f (%.2f-%.2f) | %.3f (%.3f-%.3f) | %s (%s-%s) | %s | ok |\n",
		$1, $2, $3, $4, $5, $6, $7, $8, $11, $12, $13, $9 }' "$f"
}

latency_md() {
	local f=$raw/latency.tsv
	if [ ! -f "$f" ]; then
		echo "No table: the latency section failed."
		return
	fi
	awk -F'\t' '
	NR == 1 { print "| request | server | round trip p50, us: median (min-max) | p99, us: median (min-max) | runs | status |"; print "|---|---|---|---|---|---|"; next }
	$10 != "ok" { printf "| %s B | %s | - | - | - | **%s** |\n", $1, $2, $10; next }
	{ printf "| %s B | %s | %s (%s-%s) | %s (%s-%s) | %s | ok |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$f"
}

memory_md() {
	local f=$raw/memory.tsv
	if [ ! -f "$f" ]; then
		echo "No table: the memory section failed."
		return
	fi
	awk -F'\t' '
	NR == 1 { print "| connections | server | RSS at set-up | RSS with the connections | bytes per connection | zcnet / epoll |"; print "|---|---|---|---|---|---|"; next }
	{ if ($2 == "zcnet") z[$1] = $5; else e[$1] = $5
	  r = ($2 != "zcnet" && z[$1] > 0 && $5 > 0) ? sprintf("1/%.0f", $5 / z[$1]) : "-"
	  printf "| %s | %s | %s kB | %s kB | %s | %s |\n", $1, $2, $3, $4, $5, r }' "$f"
}

chart_md() {
	[ -f "$out/$1" ] && echo "![$2]($1)" || echo "(chart $1 not drawn)"
}

disk_md() {
	case $disk_state in
	missing)
		echo "**Missing**: bench/disk-bench.sh is not in this tree (or not executable), so nothing"
		echo "was measured here."
		;;
	failed)
		echo "**Failed**: bench/disk-bench.sh did not finish; see raw/disk.log."
		[ ! -s "$raw/disk.tsv" ] || systems_md "$raw/disk.tsv" "" "$d_limit" "O_DIRECT limit"
		;;
	ok)
		echo "\`bench/disk-bench.sh --runs $disk_runs --bytes $disk_bytes --hold-page-reporting --out raw/disk.tsv\`;"
		echo "throughput as a share of this run's O_DIRECT write bandwidth."
		sed -n '/^Free page reporting/p' "$raw/disk.log" 2>/dev/null
		echo
		systems_md "$raw/disk.tsv" "" "$d_limit" "O_DIRECT limit"
		echo
		disk_ratios_md
		;;
	esac
}

# zcnet ingest's CPU s/GB against the read()+write() server in the same
# mode (buffered or O_DIRECT) and against nginx (which writes buffered).
disk_ratios_md() {
	awk -F'\t' '
	NR > 1 && $9 == "ok" { cpu[$1] = $5; gb[$1] = $2 }
	END {
		print "| zcnet ingest | CPU vs read()+write(), same mode | CPU vs nginx | throughput vs read()+write() |"
		print "|---|---|---|---|"
		split("zcnet-ingest rw-server zcnet-ingest-direct rw-server-direct", p, " ")
		for (i = 1; i <= 3; i += 2) {
			z = p[i]; r = p[i + 1]
			a = (z in cpu && r in cpu && cpu[r] > 0) ? sprintf("%.2fx", cpu[z] / cpu[r]) : "-"
			b = (z in cpu && "nginx-webdav" in cpu && cpu["nginx-webdav"] > 0) ? sprintf("%.2fx", cpu[z] / cpu["nginx-webdav"]) : "-"
			c = (z in gb && r in gb && gb[r] > 0) ? sprintf("%.2fx", gb[z] / gb[r]) : "-"
			printf "| %s | %s | %s | %s |\n", z, a, b, c
		}
	}' "$raw/disk.tsv"
}

write_report() {
	local m_limit d_limit c
	m_limit=$(value_of "$raw/limits.tsv" "memcpy, 1 core" 2)
	d_limit=$(value_of "$raw/limits.tsv" "O_DIRECT write, $direct_dir" 2)
	cat <<MD
# zcnet benchmark report

Written by \`$([ "$mode" = full ] && echo "make bench" || echo "make bench-quick")\` ($mode run) on $(date -u '+%Y-%m-%d %H:%M UTC'),
$((t_end - t_start)) s of measuring. Every figure below comes from this one run.
$([ "$mode" = quick ] && echo "
**Quick run**: $runs runs of few bytes each and fewer points; start-up costs weigh
more and the spread is wider than in a full \`make bench\`. For trends, not figures.
")

## Machine

$(machine_md)

## How to read it

- GB = 10^9 bytes. GB/s = payload bytes / the receiver's seconds (from its first
  connection to its last byte). CPU s/GB = user+sys CPU seconds of the receiving
  process, read from its rusage when it is reaped (start-up included: about
  10 ms, which is 4% of a 256 MiB run and 0.5% of a 2 GiB one), per 10^9 bytes.
- Each figure is the median of $runs runs (the disk section: $disk_runs) with the minimum and maximum beside it.
  The systems take turns (run 1 of each, then run 2, ...) so that drift hits all
  alike; ratios are of medians within this run. The machine is shared and noisy
  (see the load average above): read min-max as the noise, and compare ratios.
- All traffic is on loopback (127.0.0.1): sender and receiver share the
  $(nproc) CPUs.
- A system that failed is listed as failed, with the reason.

## Receive to memory (loopback)

$(systems_md "$raw/recv.tsv" "recv() 256 KiB" "$m_limit" "memcpy")

- recv() 256 KiB: \`zcnet recv --engine plain\`, a blocking \`recv()\` loop into a 256 KiB buffer.
- iperf3: \`iperf3 -s -1\` (its default 128 KiB reads) against \`iperf3 -c -n BYTES\`; iperf3's server counts
  bytes up to the client's end-of-test message, a little less than was sent, and both figures use its count.
- zcnet socket, uring, uring batch-us 0: \`zcnet recv --engine E\` against \`zcnet send\` (a plain sender); every engine
  gathers data for up to 200 us a wait while it comes in bulk (the default), batch-us 0 wakes for every completion.
- zcnet mmap: \`zcnet recv --engine mmap --page-aligned\` against \`zcnet send --zerocopy --page-aligned\`
  (MSG_ZEROCOPY, one page per segment: what lets the kernel map the pages).$(grep -h 'of the bytes mapped' "$raw/recv.log" 2>/dev/null | sed 's/^ *zcnet mmap:/ In this run:/')
- recv() 256 KiB, zc sender: the plain receiver against the mmap engine's sender. Over loopback the kernel
  copies a zero-copy sender's pages when they reach the receiving socket, partly in the receiver's time: this row
  is the fair baseline for zcnet mmap's CPU.
- "of memcpy": the median as a share of one core's memcpy() bandwidth measured in this run.

$(chart_md throughput.png "throughput per system")

$(chart_md cpu.png "receiver CPU per GB per system")

## Receive to disk

$(disk_md)

## The machine's limits

memcpy() between two 64 MiB buffers on one core, 2 GiB a run (the cost one copy of every byte
imposes); O_DIRECT writes of 1 MiB to a new file in $direct_dir, $disk_bytes a run, then fdatasync().
CPU s/GB here is the copying or writing thread's own.

$(systems_md "$raw/limits.tsv" "" "" "")

## Memory per idle connection

Each server is a forked child; its VmRSS is read once it listens and again with every
connection open and its 64-byte hello received. zcnet: one uring context with one 16 MiB pool
of 64 KiB pieces. epoll: a 64 KiB buffer malloc()ed and touched per connection, as a server that
has had traffic has. Kernel socket memory is not in RSS and is the same for both.
One measurement per point (memory does not drift as time does).

$(memory_md)

$(chart_md memory.png "memory per idle connection")

## Scale: concurrent streams

The same total ($scale_bytes) over N connections from one \`zcnet send --connections N\` to one
\`zcnet recv --connections N\`: the default uring engine (one thread, one 16 MiB pool) against
\`--engine plain\` (a thread per connection). Stalls: times the pool ran dry.

$(curve_md "$raw/scale.tsv")

$(chart_md scale.png "throughput and CPU against concurrent streams")

## Backpressure: pool size

One stream of $curve_bytes, \`zcnet recv --engine uring --hold-ms $hold_ms --pool-mb N\`: an application
that keeps every piece $hold_ms ms before releasing it. When the pool runs dry (a stall) the
engine stops reading and TCP's window holds the sender back; nothing is lost or copied.

$(curve_md "$raw/pool.tsv")

$(chart_md backpressure.png "throughput and stalls against pool size")

## Piece size

One stream of $curve_bytes, \`zcnet recv --engine uring --piece-kb N\` with the default 16 MiB pool.

$(curve_md "$raw/piece.tsv")

$(chart_md piece.png "throughput and CPU against piece size")

## Request/response latency

One loopback connection; a client writes a request (64 B or 100 KB) and waits for a 16-byte answer, over and over
(\`zcnet-bench --section latency\`): a blocking \`read()\`/\`write()\` server, zcnet's uring engine with its
default (waits gather completions for up to 200 us while data comes in bulk, not after the application sent),
and with \`batch_usec\` 0 (a wake-up per completion). Gathering must not delay a conversation: compare the two
zcnet rows.

$(latency_md)

## Zero-copy send: where it pays

One stream of $curve_bytes per point into \`zcnet recv --engine uring\`, sent by \`zcnet send --chunk-kb N\`
(copying \`send()\`) and by \`zcnet send --chunk-kb N --zerocopy --zerocopy-min 1\` (MSG_ZEROCOPY for every call).
**CPU here is the sender's.** Over loopback the kernel copies zero-copy data anyway when it reaches the
receiving socket, so these figures show what zero copy costs (page pinning, a completion per call, and that copy),
not what it saves on a NIC: read the difference between the rows as the price zero copy has to win back.

$(curve_md "$raw/zcsend.tsv")

## Failures

$(if [ ${#failures[@]} -eq 0 ]; then
	echo "Every section ran to its end; failed systems, if any, are marked in their tables."
else
	for c in "${failures[@]}"; do echo "- $c"; done
fi)

## Commands

Run from the top of the source tree by \`bench/report.sh$([ "$mode" = quick ] && echo " --quick")\`:

\`\`\`
$(for c in "${commands[@]}"; do echo "${c//$root\//}"; done)
\`\`\`

What each section ran per system is in its log (raw/*.log, not committed), e.g. for the receive section:

\`\`\`
$(sed -n '/^commands/,/^  run 1/p' "$raw/recv.log" 2>/dev/null | sed '$d' | sed "s|$root/||g")
\`\`\`
MD
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)

section recv recv.log --runs "$runs" --bytes "$bytes"
for c in $conns_list; do	# one measurement: memory does not drift
	section memory "memory-$c.log" --conns "$c"
done
section scale scale.log --runs "$runs" --bytes "$scale_bytes" \
	--streams "$streams"
section pool pool.log --runs "$runs" --bytes "$curve_bytes" --pools "$pools"
section piece piece.log --runs "$runs" --bytes "$curve_bytes" \
	--pieces "$pieces"
section zcsend zcsend.log --runs "$runs" --bytes "$curve_bytes" \
	--chunks "$chunks"
section latency latency.log --runs "$runs" --bytes "$bytes"
section limits limits.log --runs "$runs" --bytes "$disk_bytes" \
	--dir "$direct_dir"

disk_state=missing
if [ -x "$disk_script" ]; then
	disk_state=failed
	if run_logged disk.log "$disk_script" --runs "$disk_runs" \
		--bytes "$disk_bytes" --hold-page-reporting --out "$raw/disk.tsv"; then
		disk_state=ok
	fi
fi

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
t_end=$(date +%s)

draw_charts
report_tmp=$(mktemp "$out/.REPORT.md.XXXXXX")
write_report >"$report_tmp"
mv "$report_tmp" "$out/REPORT.md"
report_tmp=
say "wrote $out/REPORT.md and $(find "$out" -maxdepth 1 -name '*.png' | wc -l) charts in $((t_end - t_start)) s of measuring"

# A peer that fails is a finding, reported as such; a zcnet system or a
# section that fails is a bug, and fails the run (after the report).
zcnet_failed=$(awk -F'\t' '(FNR > 1 && $1 ~ /^zcnet/ && $9 ~ /^failed/) ||
	(FNR > 1 && $2 ~ /^zcnet/ && $10 ~ /^failed/) { print FILENAME ": " $0 }' \
	"$raw"/*.tsv)
if [ -n "$zcnet_failed" ]; then
	say "zcnet failed:"
	echo "$zcnet_failed" >&2
	exit 1
fi
if [ ${#failures[@]} -gt 0 ]; then
	say "${#failures[@]} part(s) failed: see the report"
	exit 1
fi
