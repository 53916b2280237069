# Shared by up.sh, down.sh and kill-node.sh: how a cluster directory is laid
# out. DIR/pids/NAME.pid holds the process group leader of each process
# (each runs under setsid, so its children go with it); DIR/logs/NAME.log
# its output; DIR/env the export lines up.sh printed.

# stop_pid NAME SIGNAL: signals NAME's process group and waits for it.
stop_pid() {
	local dir=$1 name=$2 sig=$3 pidf=$1/pids/$2.pid pid
	[[ -f $pidf ]] || return 0
	pid=$(<"$pidf")
	if kill -0 "$pid" 2>/dev/null; then
		kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
		for _ in $(seq 1 150); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "cluster: $name ($pid) ignored SIG$sig for 15 s; killing it" >&2
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidf"
}

# start_in DIR NAME CMD...: runs CMD in its own session, output to its
# log (appended: a restarted node keeps its first run's log).
start_in() {
	local dir=$1 name=$2
	shift 2
	setsid "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$dir/pids/$name.pid"
}
