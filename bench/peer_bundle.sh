# peer_bundle.sh — sourced by peers.sh and peers_load.sh: the OCI bundle in
# $WORK that both run (`/usr/bin/true` in a read-only root over the host's
# /usr, sandbox root mapped to an unprivileged host range, as in sandpit),
# and how crun is run on this host's cgroup layout.
# Needs: WORK. Sets: ROOTFS, CGROUP_FS, CGROUP_DESC, CRUN_WRAP.

ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"/{usr,proc,dev,tmp}
for l in bin lib lib64 sbin; do
  [ -e "/usr/$l" ] && ln -s "usr/$l" "$ROOTFS/$l"
done

cat >"$WORK/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["/usr/bin/true"],
    "env": ["PATH=/usr/bin:/bin"],
    "cwd": "/",
    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
    "noNewPrivileges": true
  },
  "root": {"path": "$ROOTFS", "readonly": true},
  "hostname": "peer",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=1m"]},
    {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro", "nosuid", "nodev"]}
  ],
  "linux": {
    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "namespaces": [{"type": "user"}, {"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                   {"type": "mount"}, {"type": "network"}, {"type": "cgroup"}]
  }
}
EOF

# crun 1.8 refuses the hybrid cgroup v1+v2 layout ("cgroups in hybrid mode not
# supported"). On such hosts crun runs inside a private mount namespace where
# /sys/fs/cgroup is a plain cgroup2 mount, set up outside the timing.
CGROUP_FS=$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo unknown)
case $CGROUP_FS in
  cgroup2fs) CGROUP_DESC="cgroup v2" ;;
  *) if [ -d /sys/fs/cgroup/unified ]; then CGROUP_DESC="cgroup v1+v2 hybrid"; else CGROUP_DESC="cgroup v1"; fi ;;
esac
CRUN_WRAP=()
if [ "$CGROUP_FS" != "cgroup2fs" ] && [ -d /sys/fs/cgroup/unified ]; then
  CRUN_WRAP=(unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' crun-wrap)
fi
