#!/usr/bin/env bash
# The local two-node Slurm cluster used for development, the demo and the
# integration tests: munge, slurmctld, and `slurmd -N node1` / `slurmd -N node2`
# on this machine. Run as root.
#
#   scripts/cluster.sh up            render the config, start what is not running, wait for idle nodes
#   scripts/cluster.sh down          cancel all jobs, stop the daemons
#   scripts/cluster.sh status        one line per daemon and node; exit 1 unless all are up
#   scripts/cluster.sh kill-node N   kill -9 node N's slurmd, its slurmstepds and their jobs
#   scripts/cluster.sh start-node N  start node N's slurmd again
#
# It runs the Slurm the set-up selected (SLURM_RELEASE, scripts/slurm.sh): its
# daemons, and its commands first on PATH. Each release keeps its own controller
# state and job ids (FirstJobId), so switching releases loses nothing of either.
#
# Environment: SLURM_CKPT_CLUSTER_STATE (default /var/lib/slurm-ckpt-cluster),
# SLURM_CKPT_CLUSTER_LOG (default /var/log/slurm-ckpt-cluster), SLURM_CKPT_PREFIX
# (where the plugins are installed, default /opt/slurm-ckpt), SLURM_CKPT_LAUNCHER
# (the batch scripts' interpreter for --checkpoint jobs).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
# shellcheck source=scripts/slurm.sh
. "$REPO/scripts/slurm.sh"

STATE=${SLURM_CKPT_CLUSTER_STATE:-/var/lib/slurm-ckpt-cluster}
LOGDIR=${SLURM_CKPT_CLUSTER_LOG:-/var/log/slurm-ckpt-cluster}
CONF=/etc/slurm/slurm.conf
MARKER="managed by slurm-ckpt scripts/cluster.sh"
NODES=(node1 node2)
MUNGE_PID=/run/munge/munged.pid
PREFIX=${SLURM_CKPT_PREFIX:-/opt/slurm-ckpt}
LAUNCHER=${SLURM_CKPT_LAUNCHER:-$PREFIX/venv/bin/slurm-ckpt-launch}
PLUGSTACK=/etc/slurm/plugstack.conf
PLUGSTACK_ENTRY=/etc/slurm/plugstack.conf.d/slurm-ckpt.conf
SUBMIT_LUA=/etc/slurm/job_submit.lua
CLI_FILTER_LUA=/etc/slurm/cli_filter.lua
SUBMIT_CONF=/etc/slurm/slurm-ckpt-submit.conf
CKPT_CONF=/etc/slurm-ckpt/config.toml
SERVICE_PID=$STATE/slurm-ckptd.pid

[ "$(id -u)" -eq 0 ] || die "run as root"
SLURM_HOME=$(slurm_home)
[ -x "$SLURM_HOME/sbin/slurmctld" ] || die "Slurm is not installed: run scripts/setup-system.sh first"
export PATH="$SLURM_HOME/bin:$SLURM_HOME/sbin:$PATH"
# Where the running daemons' Slurm lives, written at start-up.
RUNNING_HOME=$STATE/slurm-home

# Debian's package keeps the paths of earlier versions of this script; a built
# release has its own controller state, node spools and job id range.
release_state() {
    if [ "$SLURM_HOME" = /usr ]; then
        echo "$STATE"
    else
        echo "$STATE/slurm-$(slurm_version "$SLURM_HOME")"
    fi
}

# The first job id of the release (24.11 -> 2411000), so that job ids, the
# catalog's keys and the store's folders never collide between releases.
first_job_id() {
    if [ "$SLURM_HOME" = /usr ]; then
        echo 1
    else
        slurm_version "$SLURM_HOME" | awk -F. '{printf "%d\n", ($1 * 100 + $2) * 1000}'
    fi
}

# A killed daemon can stay a zombie for a moment (this machine's PID 1 reaps
# late): that counts as dead.
pid_alive() {
    [ -f "$1" ] || return 1
    local pid state; pid=$(cat "$1")
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
}

render_config() {
    if [ -f "$CONF" ] && ! grep -q "$MARKER" "$CONF"; then
        die "$CONF exists and is not ours; move it away to use the local test cluster"
    fi
    local mem
    # Two nodes share this machine's memory.
    mem=$(( $(slurmd -C | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p') / 2 ))
    local rstate; rstate=$(release_state)
    local new; new=$(sed -e "s|@STATE@|$STATE|g" -e "s|@RSTATE@|$rstate|g" -e "s|@LOG@|$LOGDIR|g" \
        -e "s|@MEMORY@|$mem|g" -e "s|@FIRST_JOB_ID@|$(first_job_id)|g" -e "s|@MARKER@|$MARKER|" \
        "$REPO/scripts/cluster/slurm.conf.in")
    if [ ! -f "$CONF" ] || [ "$new" != "$(cat "$CONF")" ]; then
        mkdir -p /etc/slurm
        printf '%s\n' "$new" > "$CONF"
        chmod 644 "$CONF"
        log "cluster: wrote $CONF"
        CONFIG_CHANGED=1
    fi
    install -d -o slurm -g slurm -m 0755 "$rstate/ctld" "$LOGDIR"
    # The image store at its default place; on one machine every "node" sees it.
    # 0711 root: users pass through but can neither write nor list; each one's
    # <store>/<user>/ is made by slurm-ckptd (docs/security.md).
    install -d -m 0755 /var/lib/slurm-ckpt
    install -d -m 0711 /var/lib/slurm-ckpt/store
    for n in "${NODES[@]}"; do install -d -m 0755 "$rstate/$n"; done
    touch "$LOGDIR/slurmctld.log" && chown slurm:slurm "$LOGDIR/slurmctld.log"
}

# install_file SRC DEST MODE: copy when the content differs; true when it did.
install_file() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then return 1; fi
    install -D -m "$3" "$1" "$2"
    log "cluster: wrote $2"
}

# slurm-ckpt's plugins in the cluster's configuration: the SPANK plugin's
# plugstack entry, job_submit.lua (JobSubmitPlugins=lua in slurm.conf) and
# its settings. Builds and installs the plugins first when their sources changed.
install_plugins() {
    "$REPO/scripts/setup-system.sh" plugins runtime
    local f
    for f in "$PLUGSTACK_ENTRY" "$SUBMIT_CONF"; do
        if [ -f "$f" ] && ! grep -q "$MARKER" "$f"; then
            die "$f exists and is not ours; move it away to use the local test cluster"
        fi
    done
    if [ -f "$SUBMIT_LUA" ] && ! grep -q '^-- slurm-ckpt job_submit.lua' "$SUBMIT_LUA"; then
        die "$SUBMIT_LUA exists and is not slurm-ckpt's; move it away to use the local test cluster"
    fi
    if [ -f "$CLI_FILTER_LUA" ] && ! grep -q '^-- slurm-ckpt cli_filter.lua' "$CLI_FILTER_LUA"; then
        die "$CLI_FILTER_LUA exists and is not slurm-ckpt's; move it away to use the local test cluster"
    fi
    # Debian's plugstack.conf includes plugstack.conf.d; write one that does if it is missing.
    if [ ! -f "$PLUGSTACK" ]; then
        printf 'include %s/*.conf\n' "$(dirname "$PLUGSTACK_ENTRY")" > "$PLUGSTACK"
    elif ! grep -q "^include $(dirname "$PLUGSTACK_ENTRY")/\*" "$PLUGSTACK"; then
        die "$PLUGSTACK does not include $(dirname "$PLUGSTACK_ENTRY")/*.conf; add that line"
    fi
    local tmp; tmp=$(mktemp -d)
    sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@MARKER@|$MARKER|" \
        "$REPO/scripts/cluster/plugstack-slurm-ckpt.conf.in" > "$tmp/plugstack"
    sed -e "s|@LAUNCHER@|$LAUNCHER|g" -e "s|@MARKER@|$MARKER|" \
        "$REPO/scripts/cluster/slurm-ckpt-submit.conf.in" > "$tmp/submit"
    local changed=0
    install_file "$tmp/plugstack" "$PLUGSTACK_ENTRY" 0644 && changed=1
    install_file "$tmp/submit" "$SUBMIT_CONF" 0644 && changed=1
    # slurmctld reloads job_submit.lua by itself when the file changes.
    install_file "$PREFIX/share/slurm-ckpt/job_submit.lua" "$SUBMIT_LUA" 0644 || true
    # Read by every sbatch at submission; nothing to reload.
    install_file "$PREFIX/share/slurm-ckpt/cli_filter.lua" "$CLI_FILTER_LUA" 0644 || true
    rm -rf "$tmp"
    # A running controller started before JobSubmitPlugins=lua was in slurm.conf
    # needs a reconfigure too.
    if pid_alive "$STATE/slurmctld.pid" && { [ $changed -eq 1 ] \
        || ! grep -q '^JobSubmitPlugins *= lua' <<<"$(scontrol show config 2>/dev/null)"; }; then
        scontrol reconfigure && log "cluster: slurmctld reconfigured"
    fi
    return 0
}

# slurm-ckpt's own settings (/etc/slurm-ckpt/config.toml) for this cluster.
install_settings() {
    if [ -f "$CKPT_CONF" ] && ! grep -q "$MARKER" "$CKPT_CONF"; then
        die "$CKPT_CONF exists and is not ours; move it away to use the local test cluster"
    fi
    local tmp; tmp=$(mktemp)
    sed -e "s|@MARKER@|$MARKER|" "$REPO/scripts/cluster/slurm-ckpt.toml.in" > "$tmp"
    install_file "$tmp" "$CKPT_CONF" 0644 || true
    rm -f "$tmp"
}

# The service, as on a controller: the catalog migrated, then slurm-ckptd in
# the background, logging to $LOGDIR/slurm-ckptd.log. It runs without the
# capabilities that let root ignore file permissions: what root may do on a
# root-squashed NFS or Lustre store, so the tests prove the service needs no
# more (it works in job folders with each job owner's identity).
SERVICE_DROPPED_CAPS=cap_dac_override,cap_dac_read_search,cap_fowner
start_service() {
    if pid_alive "$SERVICE_PID"; then return; fi
    "$PREFIX/venv/bin/ckpt-admin" db upgrade >/dev/null \
        || die "the catalog could not be migrated; see the message above"
    setsid capsh --drop="$SERVICE_DROPPED_CAPS" -- -c 'exec "$@"' slurm-ckptd \
        "$PREFIX/venv/bin/slurm-ckptd" </dev/null >>"$LOGDIR/slurm-ckptd.log" 2>&1 &
    echo $! > "$SERVICE_PID"
    wait_for 20 "slurm-ckptd to answer /healthz" "$PREFIX/venv/bin/python" -c \
        "import urllib.request as u; u.urlopen('http://127.0.0.1:$(service_port)/healthz', timeout=2)" \
        || die "slurm-ckptd did not become healthy; see $LOGDIR/slurm-ckptd.log"
    log "cluster: slurm-ckptd started (log: $LOGDIR/slurm-ckptd.log)"
}

service_port() { awk -F' *= *' '/^metrics_port/ {print $2+0}' "$CKPT_CONF"; }

stop_service() {
    pid_alive "$SERVICE_PID" || { rm -f "$SERVICE_PID"; return 0; }
    kill -TERM "$(cat "$SERVICE_PID")"
    if ! wait_for 20 "slurm-ckptd to stop" sh -c "! kill -0 \$(cat $SERVICE_PID) 2>/dev/null"; then
        kill -KILL "$(cat "$SERVICE_PID")" 2>/dev/null || true
    fi
    rm -f "$SERVICE_PID"
    log "cluster: slurm-ckptd stopped"
}

# A restore needs the image's exact pids free. Both nodes share this machine's
# pid space, and the suite starts many processes: with the kernel's default of
# 32768 pids wrap within minutes and land on an image's. systemd raises it to
# 4194304 on 64-bit hosts (50-pid-max.conf); containers without it keep 32768.
raise_pid_max() {
    local want=4194304
    if [ "$(cat /proc/sys/kernel/pid_max)" -lt $want ]; then
        sysctl -qw kernel.pid_max=$want || log "cluster: cannot raise kernel.pid_max to $want"
    fi
}

start_munge() {
    if pid_alive "$MUNGE_PID"; then return; fi
    [ -f /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 "munged" sh -c 'munge -n | unmunge' || die "munged did not start; see /var/log/munge/munged.log"
    log "cluster: munged started"
}

start_ctld() {
    local fresh=0
    if ! pid_alive "$STATE/slurmctld.pid"; then
        "$SLURM_HOME/sbin/slurmctld"
        fresh=1
        log "cluster: slurmctld started"
    fi
    wait_for 30 "slurmctld" sh -c 'scontrol ping | grep -q UP' \
        || die "slurmctld did not come up; see $LOGDIR/slurmctld.log"
    if [ $fresh -eq 1 ] && [ "${RESTARTED:-0}" -eq 0 ]; then
        # Jobs saved by an earlier run that was not brought down cleanly would
        # run again and get in the way of tests: cancel them. (Unlike
        # `slurmctld -c`, this keeps job ids growing, so none is reused.)
        local stale; stale=$(squeue -h -o %A | paste -sd' ')
        if [ -n "$stale" ]; then
            # shellcheck disable=SC2086
            scancel $stale && log "cluster: cancelled jobs left from an earlier run: $stale"
        fi
    fi
}

start_node() {
    local n=$1
    if pid_alive "$STATE/slurmd-$n.pid"; then return; fi
    "$SLURM_HOME/sbin/slurmd" -N "$n"
    log "cluster: slurmd -N $n started"
}

node_state() { sinfo -h -N -n "$1" -o '%t' 2>/dev/null | head -n1; }

wait_idle() {
    local n=$1
    # A node that was killed comes back DOWN; ReturnToService=2 returns it
    # once it registers, a resume makes sure.
    wait_for 10 "$n to register" sh -c "sinfo -h -N -n $n -o '%t' | grep -vq -e down -e unk" \
        || scontrol update nodename="$n" state=resume 2>/dev/null || true
    wait_for 30 "$n to be idle" sh -c "sinfo -h -N -n $n -o '%t' | grep -qE '^(idle|mix|alloc)$'" \
        || die "$n is $(node_state "$n"), not idle; see $LOGDIR/slurmd-$n.log"
}

# Daemons started with an older slurm.conf: restart them (running jobs live in
# their slurmstepd and go on), since node and preemption settings need it.
restart_daemons() {
    local f
    for f in "$STATE"/slurmd-*.pid "$STATE/slurmctld.pid"; do
        pid_alive "$f" || continue
        kill -TERM "$(cat "$f")"
        wait_for 30 "$(basename "$f" .pid) to stop" sh -c "! kill -0 \$(cat $f) 2>/dev/null" || true
        rm -f "$f"
    done
    RESTARTED=1
    log "cluster: stopped slurmctld and slurmd to restart them with the new slurm.conf"
}

# Daemons of another Slurm release: bring that cluster down with its own
# commands first (its jobs end; its controller state stays for its next run).
leave_other_release() {
    local running
    running=$(cat "$RUNNING_HOME" 2>/dev/null || echo /usr)
    [ "$running" != "$SLURM_HOME" ] || return 0
    pid_alive "$STATE/slurmctld.pid" || ls "$STATE"/slurmd-*.pid >/dev/null 2>&1 || return 0
    log "cluster: Slurm $(slurm_version "$running") is running; bringing it down for $(slurm_version "$SLURM_HOME")"
    (SLURM_HOME=$running; PATH="$running/bin:$running/sbin:$PATH"; cmd_down)
}

cmd_up() {
    local t0=$EPOCHREALTIME
    leave_other_release
    CONFIG_CHANGED=0
    render_config
    if [ $CONFIG_CHANGED -eq 1 ] && pid_alive "$STATE/slurmctld.pid"; then
        restart_daemons
    fi
    install_plugins
    install_settings
    raise_pid_max
    start_munge
    echo "$SLURM_HOME" > "$RUNNING_HOME"
    start_ctld
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do wait_idle "$n"; done
    start_service
    log "cluster: Slurm $(slurm_version "$SLURM_HOME") ($SLURM_HOME)"
    log "cluster: up in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')s"
}

cmd_down() {
    stop_service
    if pid_alive "$STATE/slurmctld.pid"; then
        # scontrol shutdown leaves job processes running: cancel jobs first.
        squeue -h -o %A | xargs -r scancel 2>/dev/null || true
        wait_for 20 "jobs to end" sh -c '[ -z "$(squeue -h -t R,CG,PD -o %i)" ]' || log "cluster: some jobs still listed"
        scontrol shutdown >/dev/null 2>&1 || true
    fi
    local f
    for f in "$STATE/slurmctld.pid" "$STATE"/slurmd-*.pid; do
        [ -f "$f" ] || continue
        if ! wait_for 15 "$(basename "$f" .pid) to exit" sh -c "! kill -0 \$(cat $f) 2>/dev/null"; then
            kill -9 "$(cat "$f")" 2>/dev/null || true
        fi
        rm -f "$f"
    done
    if pid_alive "$MUNGE_PID"; then
        kill "$(cat "$MUNGE_PID")"
        wait_for 10 "munged to exit" sh -c "! kill -0 \$(cat $MUNGE_PID) 2>/dev/null" || true
    fi
    log "cluster: down"
}

cmd_status() {
    local ok=0
    pid_alive "$MUNGE_PID" && echo "munged: running" || { echo "munged: stopped"; ok=1; }
    pid_alive "$STATE/slurmctld.pid" && echo "slurmctld: running" || { echo "slurmctld: stopped"; ok=1; }
    for n in "${NODES[@]}"; do
        if pid_alive "$STATE/slurmd-$n.pid"; then
            echo "slurmd $n: running, state $(node_state "$n")"
        else
            echo "slurmd $n: stopped"; ok=1
        fi
    done
    pid_alive "$SERVICE_PID" && echo "slurm-ckptd: running" || { echo "slurm-ckptd: stopped"; ok=1; }
    # The daemons are those of the release they were started with; a selection made
    # since then takes effect at the next `up`.
    local selected; selected=$(slurm_home)
    if [ "$SLURM_HOME" = "$selected" ]; then
        echo "slurm: $(slurm_version "$SLURM_HOME") ($SLURM_HOME)"
    else
        echo "slurm: $(slurm_version "$SLURM_HOME") ($SLURM_HOME) runs; $(slurm_version "$selected") ($selected) is selected: run cluster.sh up to switch"
    fi
    return $ok
}

# All descendants of the given pids, deepest last.
descendants() {
    local p
    for p in "$@"; do
        local kids; kids=$(pgrep -P "$p" || true)
        [ -n "$kids" ] || continue
        echo "$kids"
        # shellcheck disable=SC2086
        descendants $kids
    done
}

# Simulate a node failure: everything of node N dies at once, as in a power loss.
cmd_kill_node() {
    local n=${1:?usage: cluster.sh kill-node NODE}
    local pids=()
    pid_alive "$STATE/slurmd-$n.pid" && pids+=("$(cat "$STATE/slurmd-$n.pid")")
    local job
    for job in $(squeue -h -w "$n" -t R,CG -o %A 2>/dev/null); do
        pids+=($(pgrep -f "^slurmstepd: \[$job\." || true))
    done
    [ ${#pids[@]} -gt 0 ] || die "node $n has no running processes"
    local all; all=$(printf '%s\n' "${pids[@]}"; descendants "${pids[@]}")
    # Freeze first so no process can fork or react while the others die.
    # shellcheck disable=SC2086
    kill -STOP $all 2>/dev/null || true
    # shellcheck disable=SC2086
    kill -KILL $all 2>/dev/null || true
    rm -f "$STATE/slurmd-$n.pid"
    log "cluster: killed node $n ($(echo $all | wc -w) processes)"
}

# Every command but `up` acts on the daemons that run, of whichever release.
if [ "${1:-}" != up ] && [ -f "$RUNNING_HOME" ] && [ -x "$(cat "$RUNNING_HOME")/sbin/slurmctld" ]; then
    SLURM_HOME=$(cat "$RUNNING_HOME")
    PATH="$SLURM_HOME/bin:$SLURM_HOME/sbin:$PATH"
fi

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    kill-node) cmd_kill_node "${2:-}" ;;
    start-service) start_service ;;
    stop-service) stop_service ;;
    start-node) start_node "${2:?usage: cluster.sh start-node NODE}"; wait_idle "$2" ;;
    *) die "usage: cluster.sh up|down|status|kill-node NODE|start-node NODE|start-service|stop-service" ;;
esac
