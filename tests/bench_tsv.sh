#!/usr/bin/env bash
# bench_tsv.sh - zcnet-bench's sections, tiny, and the TSV tables they write
# for bench/report.sh: the shared per-system header, one row per system,
# every zcnet system "ok", a peer either "ok" or "failed:WHY" with "-" in
# its number columns; curve tables with their x column first; bad lists
# refused.
#
# usage: bench_tsv.sh PATH/TO/zcnet-bench
set -uo pipefail

bench=${1:?usage: bench_tsv.sh PATH/TO/zcnet-bench}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcnet-bench-tsv.XXXXXX")
failures=0

cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '# %s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*"
	failures=$((failures + 1))
}

shared=$'system\tgbps_med\tgbps_min\tgbps_max\tcpu_s_per_gb_med\tcpu_s_per_gb_min\tcpu_s_per_gb_max\truns\tstatus'

# check_rows FILE HEADER FIELDS ROWS SYSCOL: the header, the number of rows
# and of fields in each, and a status that fits the system's name.
check_rows() {
	local f=$1 head=$2 nf=$3 rows=$4 sc=$5 bad
	[ -f "$f" ] || {
		fail "$f was not written"
		return
	}
	[ "$(head -n1 "$f")" = "$head" ] || fail "$f: header: $(head -n1 "$f")"
	[ "$(($(wc -l <"$f") - 1))" = "$rows" ] || fail "$f: not $rows rows"
	bad=$(awk -F'\t' -v nf="$nf" -v sc="$sc" 'NR > 1 {
		st = $(sc + 8)
		if (NF != nf) print "fields: " $0
		else if ($sc ~ /^(zcnet|memcpy)/ && st != "ok") print "not ok: " $0
		else if (st != "ok" && (st !~ /^failed:./ || $(sc + 1) != "-")) print "status: " $0
		else if (st == "ok" && $(sc + 1) !~ /^[0-9.]+$/) print "number: " $0
	}' "$f")
	[ -z "$bad" ] || fail "$f: $bad"
}

run() { # run LOG ARGS...: zcnet-bench ARGS, its output in LOG
	local log=$1
	shift
	if ! "$bench" "$@" >"$tmp/$log" 2>&1; then
		fail "zcnet-bench $*: exit status $?"
		tail -n 20 "$tmp/$log" | sed 's/^/    | /'
	fi
}

say "recv: every system, 1 run of 32 MiB"
run recv.log --section recv --tsv "$tmp" --runs 1 --bytes 32M
check_rows "$tmp/recv.tsv" "$shared" 9 7 1

say "pool and scale curves"
run pool.log --section pool --tsv "$tmp" --runs 1 --bytes 8M --pools 1,2
check_rows "$tmp/pool.tsv" $'pool_mb\t'"$shared"$'\tstalls_med\tstalls_min\tstalls_max' 13 2 2
run scale.log --section scale --tsv "$tmp" --runs 1 --bytes 16M --streams 1,4
check_rows "$tmp/scale.tsv" $'streams\t'"$shared"$'\tstalls_med\tstalls_min\tstalls_max' 13 4 2

say "zcsend and latency"
run zcsend.log --section zcsend --tsv "$tmp" --runs 1 --bytes 8M --chunks 16
check_rows "$tmp/zcsend.tsv" $'chunk_kb\t'"$shared"$'\tstalls_med\tstalls_min\tstalls_max' 13 2 2
run latency.log --section latency --tsv "$tmp" --runs 1 --bytes 8M
[ "$(head -n1 "$tmp/latency.tsv")" = $'req_bytes\tsystem\tp50_us_med\tp50_us_min\tp50_us_max\tp99_us_med\tp99_us_min\tp99_us_max\truns\tstatus' ] ||
	fail "latency.tsv: header"
[ "$(awk -F'\t' 'NR > 1 && $10 == "ok" && $3 > 0' "$tmp/latency.tsv" | wc -l)" = 6 ] ||
	fail "latency.tsv: not 6 ok rows: $(cat "$tmp/latency.tsv")"

say "limits: memcpy must work; O_DIRECT may not where $tmp is"
run limits.log --section limits --tsv "$tmp" --runs 1 --bytes 8M --dir "$tmp"
check_rows "$tmp/limits.tsv" "$shared" 9 2 1
! compgen -G "$tmp/zcnet-bench-direct.*" >/dev/null || fail "an O_DIRECT file was left"

say "bad arguments"
for a in "--streams 1,,2" "--pools 4," "--pieces x" "--section nope"; do
	# shellcheck disable=SC2086 # split on purpose
	if "$bench" $a >/dev/null 2>&1; then
		fail "zcnet-bench $a succeeded"
	fi
done

[ "$failures" -eq 0 ] || {
	echo "$failures failure(s)"
	exit 1
}
echo "all passed"
