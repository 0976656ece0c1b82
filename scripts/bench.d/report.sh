# shellcheck shell=bash
# scripts/bench.d/report.sh: the results table of scripts/bench (sourced; reads R[], PID[]...).

# calc EXPR: floating point with awk ("" when an operand is missing).
calc() { awk "BEGIN { printf \"%s\", ($1) }" 2>/dev/null; }
have() { [[ -n ${R[$1]:-} && ${R[$1]} != n/a ]]; }

fmt_qps() { awk -v v="$1" 'BEGIN { printf "%.1f k", v / 1000 }'; }
fmt_mb() { awk -v v="$1" 'BEGIN { printf "%.0f MB", v / 1024 }'; }

# ratio A B: "×A/B" to two decimals, or "" if B is missing or zero.
ratio() {
    [[ -n $1 && -n $2 ]] || return 0
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "×%.2f", a / b }'
}

# marks TARGET SCENARIO: footnote marks for one run.
marks() {
    local t=$1 s=$2 m=""
    local sent=${R[$t,$s.sent]:-0} bad
    bad=$(calc "${R[$t,$s.timeouts]:-0} + ${R[$t,$s.servfail]:-0} + ${R[$t,$s.refused]:-0} + ${R[$t,$s.other_rcode]:-0}")
    if ((sent > 0)) && [[ $(calc "$bad / $sent > 0.01") == 1 ]]; then m+="!"; fi
    if [[ $(calc "${R[$t,$s.core_others]:-0} > 0.15") == 1 ]]; then m+="~"; fi
    if [[ ${R[$t,$s.gen_cpu]:-} && $(calc "${R[$t,$s.gen_cpu]} >= 0.95 && ${R[$t,$s.srv_cpu]:-0} < 0.90") == 1 ]]; then
        m+="‡"
    fi
    # Every expected answer has an A record (0.0.0.0 or the upstream's address).
    if [[ $t != noop && -n ${R[$t,$s.with_answer]:-} ]] && ((${R[$t,$s.answered]:-0} > 0)) &&
        [[ $(calc "${R[$t,$s.with_answer]} < 0.99 * ${R[$t,$s.answered]}") == 1 && $m != *"!"* ]]; then
        m+="!"
    fi
    if [[ $s == dp-* && $t != noop && -n $DNSPERF_CEILING ]] &&
        [[ $(calc "${R[$t,$s.qps]} >= 0.9 * $DNSPERF_CEILING") == 1 ]]; then
        m+="†"
    fi
    printf '%s' "$m"
}

# per_core TARGET SCENARIO: QPS divided by the share of its core the server had during the run
# (srv_cpu): what one whole core would have answered. On a shared machine the servers get
# less than their core; this corrects for it when the server was the bottleneck (closed loop).
per_core() {
    local t=$1 s=$2
    if ! have "$t,$s.qps" || ! have "$t,$s.srv_cpu"; then return 0; fi
    awk -v q="${R[$t,$s.qps]}" -v c="${R[$t,$s.srv_cpu]}" 'BEGIN { if (c > 0.05) printf "%.0f", q / c }'
}

qps_cell() { # qps_cell TARGET SCENARIO: "measured / per core ×ratio-per-core"
    local t=$1 s=$2
    have "$t,$s.qps" || { printf '—'; return; }
    local r="" core mine ref
    core=$(per_core "$t" "$s")
    if [[ $t != unbound ]]; then
        mine=${core:-${R[$t,$s.qps]}}
        ref=$(per_core unbound "$s")
        r=" $(ratio "$mine" "${ref:-${R[unbound,$s.qps]:-}}")"
    fi
    if [[ -n $core ]]; then
        printf '%s / %s%s%s' "$(fmt_qps "${R[$t,$s.qps]}")" "$(fmt_qps "$core")" "$r" "$(marks "$t" "$s")"
    else
        printf '%s%s%s' "$(fmt_qps "${R[$t,$s.qps]}")" "$r" "$(marks "$t" "$s")"
    fi
}

dp_cell() { # dp_cell TARGET SCENARIO: dnsperf, measured QPS only (dnsperf is often the bottleneck)
    local t=$1 s=$2
    have "$t,$s.qps" || { printf '—'; return; }
    local r=""
    [[ $t != unbound ]] && r=" $(ratio "${R[$t,$s.qps]}" "${R[unbound,$s.qps]:-}")"
    printf '%s%s%s' "$(fmt_qps "${R[$t,$s.qps]}")" "$r" "$(marks "$t" "$s")"
}

lat_cell() { # lat_cell TARGET SCENARIO: "avg / p99 ms ×p99-ratio"
    local t=$1 s=$2
    have "$t,$s.lat_p99_ms" || { printf '—'; return; }
    local r=""
    [[ $t != unbound ]] && r=" $(ratio "${R[$t,$s.lat_p99_ms]}" "${R[unbound,$s.lat_p99_ms]:-}")"
    printf '%.2f / %.2f%s%s' "${R[$t,$s.lat_avg_ms]}" "${R[$t,$s.lat_p99_ms]}" "$r" "$(marks "$t" "$s")"
}

plain_cell() { # plain_cell TARGET KEY FORMAT-FUNCTION
    local t=$1 k=$2 f=$3
    have "$t,$k" || { printf '—'; return; }
    local r=""
    [[ $t != unbound && $t != noop ]] && r=" $(ratio "${R[$t,$k]}" "${R[unbound,$k]:-}")"
    printf '%s%s' "$($f "${R[$t,$k]}")" "$r"
}

fmt_s() { printf '%s s' "$1"; }

peak_cell() { # VmHWM after load / after all runs, ratio of the latter to Unbound's
    local t=$1
    have "$t,hwm" || { printf '—'; return; }
    local r=""
    [[ $t != unbound && $t != noop ]] && r=" $(ratio "${R[$t,hwm_end]:-}" "${R[unbound,hwm_end]:-}")"
    printf '%.0f / %s%s' "$(calc "${R[$t,hwm]} / 1024")" "$(fmt_mb "${R[$t,hwm_end]:-0}")" "$r"
}

reload_cell() {
    [[ $1 == metasink ]] || { printf '—'; return; }
    if have metasink,reload_peak; then
        printf '%s× (%s → %s, %s s)' "${R[metasink,reload]}" "$(fmt_mb "${R[metasink,reload_steady]}")" \
            "$(fmt_mb "${R[metasink,reload_peak]}")" "${R[metasink,reload_secs]}"
    else
        printf 'not measured'
    fi
}

# The versions line (computed when the run ends, kept in state.sh for --report).
versions() {
    local versions=() joined targets
    read -ra targets <<<"$BENCH_TARGETS"
    for t in "${targets[@]}" nsd dnsperf; do versions+=("$(version_of "$t")"); done
    joined=$(printf '%s; ' "${versions[@]}")
    printf '%s' "${joined%; }"
}

version_of() {
    case $1 in
    metasink)
        local rev
        if [[ -n ${METASINK_BIN:-} ]]; then
            rev="binary $METASINK_BIN"
        else
            rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
            [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] &&
                rev+=" + uncommitted changes"
        fi
        printf 'metasink %s (%s)' "$("$METASINK" --version 2>/dev/null | awk '{print $2}')" "$rev"
        ;;
    dnsmasq) dnsmasq --version | head -n 1 | awk '{print "dnsmasq " $3}' ;;
    unbound) unbound -V | awk '/^Version/ {print "Unbound " $2}' ;;
    nsd) nsd -v 2>&1 | awk '/^NSD version/ {print "NSD " $3}' ;;
    dnsperf) dnsperf -h 2>&1 | awk '/^Version/ {print "dnsperf " $2}' ;;
    metasink-log) printf 'metasink-log: the same metasink with [querylog] mode = "all"' ;;
    noop) printf 'noop-responder (tools/loadgen, batched)' ;;
    esac
}

check_line() { # check_line DESCRIPTION VALUE-TEXT PASS(1/0/"")
    local verdict=n/a
    [[ $3 == 1 ]] && verdict=PASS
    [[ $3 == 0 ]] && verdict=FAIL
    printf '| %s | %s | %s |\n' "$1" "$2" "$verdict"
}

targets_check() {
    [[ " $BENCH_TARGETS " == *" metasink "* && " $BENCH_TARGETS " == *" unbound "* ]] || return 0
    local m=metasink u=unbound n=noop v
    echo
    echo "Issue 5 targets, metasink (ratios from this run):"
    echo
    echo "| target | measured | verdict |"
    echo "| --- | --- | --- |"
    # QPS targets are per server core: compare per-core figures (the measured ratio beside).
    local a b ra rb measured
    for s in blocked cached uncached; do
        for ref in $u $n; do
            [[ $s == uncached && $ref == "$n" ]] && continue
            if ! have "$m,$s.qps" || ! have "$ref,$s.qps"; then continue; fi
            a=$(per_core $m "$s")
            b=$(per_core "$ref" "$s")
            ra=${R[$m,$s.qps]}
            rb=${R[$ref,$s.qps]}
            v=$(calc "${a:-$ra} / ${b:-$rb}")
            measured=$(calc "$ra / $rb")
            if [[ $ref == "$u" && $s == uncached ]]; then
                check_line "$s QPS per core ≥ Unbound's" \
                    "$(printf '×%.2f per core (×%.2f measured)' "$v" "$measured")" "$(calc "$v >= 1")"
            elif [[ $ref == "$u" ]]; then
                # What a server doing no work at all reaches against Unbound here: where the
                # load generator and the kernel's loopback cost stop the measurement.
                local ceiling="" noop_core
                if have "$n,$s.qps"; then
                    noop_core=$(per_core $n "$s")
                    ceiling=$(printf '; the no-work responder: ×%.2f, the most this machine can show' \
                        "$(calc "${noop_core:-${R[$n,$s.qps]}} / ${b:-$rb}")")
                fi
                check_line "$s QPS per core ≥ 1.5× Unbound's" \
                    "$(printf '×%.2f per core (×%.2f measured)' "$v" "$measured")$ceiling" "$(calc "$v >= 1.5")"
            else
                check_line "$s QPS per core ≥ 90 % of the batched no-work responder's (issue 13)" \
                    "$(printf '%.0f %% per core (%.0f %% measured)' "$(calc "$v * 100")" "$(calc "$measured * 100")")" \
                    "$(calc "$v >= 0.9")"
            fi
        done
    done
    if have "$m,rss"; then
        check_line "RSS after loading $LIST_NAMES names ≤ 48 MB" "$(fmt_mb "${R[$m,rss]}")" \
            "$(calc "${R[$m,rss]} <= 48 * 1024")"
    fi
    if have "$m,load"; then
        check_line "load and compile ≤ 1 s" "${R[$m,load]} s" "$(calc "${R[$m,load]} <= 1")"
    fi
    if have "$m,reload_peak"; then
        check_line "peak during reload ≤ 2× steady" "${R[$m,reload]}×" "$(calc "${R[$m,reload]} <= 2")"
    else
        check_line "peak during reload ≤ 2× steady" "not measured" ""
    fi
    for s in blocked@rate mixed@rate; do
        if have "$m,$s.lat_p99_ms" && have "$u,$s.lat_p99_ms"; then
            local rounds=""
            if have "$m,$s.p99_rounds" && have "$u,$s.p99_rounds"; then
                rounds=" (medians; rounds: ${R[$m,$s.p99_rounds]// / \/ } vs ${R[$u,$s.p99_rounds]// / \/ } ms)"
            fi
            check_line "p99 at $BENCH_RATE QPS (${s%@rate}) ≤ Unbound's" \
                "$(printf '%.2f ms vs %.2f ms' "${R[$m,$s.lat_p99_ms]}" "${R[$u,$s.lat_p99_ms]}")$rounds" \
                "$(calc "${R[$m,$s.lat_p99_ms]} <= ${R[$u,$s.lat_p99_ms]}")"
        fi
    done
}

report() {
    # dnsperf's ceiling: the best it did against the no-work responder.
    DNSPERF_CEILING=""
    for s in dp-blocked dp-cached; do
        if have "noop,$s.qps" && [[ -z $DNSPERF_CEILING || ${R[noop,$s.qps]} -gt $DNSPERF_CEILING ]]; then
            DNSPERF_CEILING=${R[noop,$s.qps]}
        fi
    done
    local targets dp=""
    read -ra targets <<<"$BENCH_TARGETS"
    echo
    echo "## metasink benchmark, $REPORT_DATE"
    echo
    echo "Command: \`$BENCH_COMMAND\` (BENCH_SECONDS=$BENCH_SECONDS, BENCH_NICE=$BENCH_NICE," \
        "outstanding $BENCH_OUTSTANDING, $BENCH_SOCKETS sockets). Machine: $(nproc) CPUs," \
        "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r);" \
        "load average at the end $REPORT_LOADAVG. List: $LIST_NAMES names ($(basename "$LIST"))." \
        "Servers on CPU $BENCH_SERVER_CPU, load generator and nsd on CPU $BENCH_GEN_CPU."
    echo "Versions: ${VERSIONS:-}."
    echo
    [[ $BENCH_DNSPERF == 1 ]] && dp=" dnsperf blocked QPS | dnsperf cached QPS |"
    echo "| target | load | RSS after load | peak RSS: load / runs | blocked QPS: measured / per core | cached QPS: measured / per core | mixed QPS: measured / per core | uncached QPS: measured / per core | blocked @${BENCH_RATE} avg / p99 ms | mixed @${BENCH_RATE} avg / p99 ms |$dp reload peak / steady |"
    local cols=11
    [[ $BENCH_DNSPERF == 1 ]] && cols=13
    printf '|'
    for _ in $(seq "$cols"); do printf ' --- |'; done
    echo
    for t in "${targets[@]}"; do
        local name=$t
        [[ $t == noop ]] && name="no-work responder"
        [[ $t == unbound ]] && name="Unbound (reference)"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$name" \
            "$(plain_cell "$t" load fmt_s)" "$(plain_cell "$t" rss fmt_mb)" \
            "$(peak_cell "$t")" \
            "$(qps_cell "$t" blocked)" "$(qps_cell "$t" cached)" "$(qps_cell "$t" mixed)" \
            "$(qps_cell "$t" uncached)" "$(lat_cell "$t" blocked@rate)" "$(lat_cell "$t" mixed@rate)"
        if [[ $BENCH_DNSPERF == 1 ]]; then
            printf ' %s | %s |' "$(dp_cell "$t" dp-blocked)" "$(dp_cell "$t" dp-cached)"
        fi
        printf ' %s |\n' "$(reload_cell "$t")"
    done
    echo
    echo "Columns: load = start until a blocked name (the list's last line) is answered as blocked;" \
        "RSS = VmRSS 0.5 s after that; peak RSS = VmHWM then, and after all the runs below (before the reload)." \
        "QPS = answers per second with $BENCH_OUTSTANDING queries in flight (tools/loadgen, closed loop, ${BENCH_SECONDS} s)," \
        "and per core = that QPS divided by the share of its core the server got during the run (the rest went to other processes on this shared machine);" \
        "blocked = names of the list, cached = 1000 upstream names asked before the run," \
        "mixed = 70 % cached / 20 % blocked / 10 % new names, uncached = a new name every query" \
        "(forwarded to nsd). avg / p99 = latency at a fixed $BENCH_RATE QPS (open loop, from the time each query was due;" \
        "the median of ${BENCH_LATENCY_ROUNDS:-1} ${BENCH_SECONDS} s rounds by p99, servers interleaved in each round)." \
        "×N = ratio to Unbound (QPS columns: of the per-core figures; latency: of the p99)."
    local notes=()
    if have nsd,uncached.qps; then
        notes+=("nsd alone, asked the uncached file directly (sharing CPU $BENCH_GEN_CPU with the generator): $(fmt_qps "${R[nsd,uncached.qps]}") QPS, the ceiling of the uncached column.")
    fi
    if have noop,blocked.qps; then
        notes+=("loadgen against the no-work responder: $(fmt_qps "${R[noop,blocked.qps]}") QPS with the generator at ${R[noop,blocked.gen_cpu]:-?} of its core and the responder at ${R[noop,blocked.srv_cpu]:-?} of its core.")
    fi
    if [[ $BENCH_DNSPERF == 1 && -n $DNSPERF_CEILING ]]; then
        notes+=("dnsperf against the no-work responder: $(fmt_qps "$DNSPERF_CEILING") QPS at best (blocked: server at ${R[noop,dp-blocked.srv_cpu]:-?} of its core, cached: ${R[noop,dp-cached.srv_cpu]:-?}): dnsperf's own ceiling on this machine; † marks a dnsperf figure within 10 % of it (dnsperf-bound: read the loadgen columns).")
    fi
    notes+=("! more than 1 % of the queries timed out (1 s), got SERVFAIL/REFUSED, or got no A record; ~ other processes used more than 15 % of the server's core during the run (noise); ‡ the generator used ≥ 95 % of its core while the server used < 90 % of its own (generator-bound).")
    if have metasink,reload_note; then notes+=("${R[metasink,reload_note]}"); fi
    # A server that logs every query is measuring its logging too: say so.
    for t in "${targets[@]}"; do
        if have "$t,blocked.log_bytes" && have "$t,blocked.sent" && ((${R[$t,blocked.sent]} > 0)); then
            local per_query
            per_query=$(calc "${R[$t,blocked.log_bytes]} / ${R[$t,blocked.sent]}")
            if [[ $(calc "$per_query >= 10") == 1 ]]; then
                notes+=("$t wrote $(printf '%.0f' "$per_query") bytes of log per query (stderr to a file) during the blocked run: its figures include that logging${BENCH_METASINK_RUST_LOG:+ (RUST_LOG=$BENCH_METASINK_RUST_LOG)}.")
            fi
        fi
    done
    local worst
    worst=$(awk -F'\t' '$1 != "nsd" { if (match($4, /core_others=[0-9.]+/)) { v = substr($4, RSTART + 12, RLENGTH - 12); if (v > m) m = v } } END { printf "%.2f", m }' "$RUNS_TSV")
    notes+=("Largest share of the server core taken by other processes during a run: $worst (this machine is shared).")
    for note in "${notes[@]}"; do echo "- $note"; done
    targets_check
    querylog_check
    report_protocols
}

# Issue 14's cost: metasink logging every query (metasink-log) against metasink with the log
# off, in the same run: blocked and cached QPS per core ≥ 85 %, RSS at the end ≤ +16 MiB.
querylog_check() {
    [[ " $BENCH_TARGETS " == *" metasink "* && " $BENCH_TARGETS " == *" metasink-log "* ]] || return 0
    local off=metasink on=metasink-log s a b v
    echo
    echo "Issue 14 targets, [querylog] mode = \"all\" against the log off (ratios from this run):"
    echo
    echo "| target | measured | verdict |"
    echo "| --- | --- | --- |"
    for s in blocked cached; do
        have "$on,$s.qps" && have "$off,$s.qps" || continue
        a=$(per_core $on "$s")
        b=$(per_core $off "$s")
        v=$(calc "${a:-${R[$on,$s.qps]}} / ${b:-${R[$off,$s.qps]}}")
        check_line "$s QPS per core with the log ≥ 85 % of without" \
            "$(printf '%.0f %% per core (%.0f %% measured)' "$(calc "$v * 100")" \
                "$(calc "${R[$on,$s.qps]} / ${R[$off,$s.qps]} * 100")")" "$(calc "$v >= 0.85")"
    done
    if have "$on,rss_end" && have "$off,rss_end"; then
        v=$(calc "(${R[$on,rss_end]} - ${R[$off,rss_end]}) / 1024")
        check_line "RSS after all runs, with the log − without ≤ 16 MiB" \
            "$(printf '%+.1f MiB (%s vs %s)' "$v" "$(fmt_mb "${R[$on,rss_end]}")" "$(fmt_mb "${R[$off,rss_end]}")")" \
            "$(calc "$v <= 16")"
    fi
}

# The upstream protocol case (BENCH_PROTOCOLS): uncached QPS and p50 over DoT and DoH against
# UDP, through the same local frontend; the targets of issue 17 (QPS ≥ ½ of UDP, p50 ≤ 2×).
report_protocols() {
    [[ ${BENCH_PROTOCOLS:-0} == 1 ]] && have metasink-udp,uncached.qps || return 0
    local udp=metasink-udp protocol t
    echo
    echo "### Upstream protocols (metasink, no list → local Unbound → nsd; uncached names; tcp:// shows what TLS adds to a TCP stream)"
    echo
    echo "| upstream | uncached QPS | ×UDP | p50 / p99 ms @${BENCH_PROTOCOL_RATE} QPS | p50 ×UDP |"
    echo "| --- | --- | --- | --- | --- |"
    for protocol in ${PROTOCOLS[*]}; do
        t=metasink-$protocol
        have "$t,uncached.qps" || continue
        printf '| %s | %s%s | %.2f× | %s / %s | %.2f× |\n' "$protocol" "$(fmt_qps "${R[$t,uncached.qps]}")" \
            "$(marks "$t" uncached)" "$(calc "${R[$t,uncached.qps]} / ${R[$udp,uncached.qps]}")" \
            "${R[$t,uncached@rate.lat_p50_ms]:-?}" "${R[$t,uncached@rate.lat_p99_ms]:-?}" \
            "$(calc "${R[$t,uncached@rate.lat_p50_ms]:-0} / ${R[$udp,uncached@rate.lat_p50_ms]:-1}")"
    done
    echo
    echo "Issue 17 targets (ratios from this run):"
    echo
    echo "| target | measured | verdict |"
    echo "| --- | --- | --- |"
    local qps p50
    for protocol in ${PROTOCOLS[*]}; do
        [[ $protocol == @(udp|tcp) ]] && continue
        t=metasink-$protocol
        have "$t,uncached.qps" || continue
        qps=$(calc "${R[$t,uncached.qps]} / ${R[$udp,uncached.qps]}")
        check_line "$protocol: uncached QPS ≥ ½ of UDP's" "$(printf '%.2f×' "$qps")"             "$(calc "$qps >= 0.5")"
        if have "$t,uncached@rate.lat_p50_ms" && have "$udp,uncached@rate.lat_p50_ms"; then
            p50=$(calc "${R[$t,uncached@rate.lat_p50_ms]} / ${R[$udp,uncached@rate.lat_p50_ms]}")
            check_line "$protocol: p50 ≤ 2× UDP's" "$(printf '%.2f×' "$p50")" "$(calc "$p50 <= 2")"
        fi
    done
    [[ -z ${PROTOCOLS_NOTE:-} ]] || echo "- $PROTOCOLS_NOTE"
}
