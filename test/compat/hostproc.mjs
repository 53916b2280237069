// Host-side views used by the isolation tests: what the host kernel says about
// processes a sandbox started (found by a unique marker in their argv).
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

function readOr(path, fallback = null) {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return fallback
  }
}

/** Host pids whose command line contains marker (excluding this process). */
export function hostPidsWithMarker(marker) {
  const pids = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    const cmdline = readOr(`/proc/${name}/cmdline`)
    if (cmdline && cmdline.split('\0').join(' ').includes(marker)) pids.push(Number(name))
  }
  return pids
}

/** The four uids (real, effective, saved, fs) of a host pid, from /proc/PID/status. */
export function hostUids(pid) {
  const status = readOr(`/proc/${pid}/status`)
  if (!status) return null
  const line = status.split('\n').find((l) => l.startsWith('Uid:'))
  return line.split(/\s+/).slice(1, 5).map(Number)
}

/** Number of processes the host sees. */
export function hostProcessCount() {
  // Kernel threads (kthreadd, pid 2, and its children) are left out: the
  // kernel starts workers of its own under a fork storm, and no sandbox can
  // make one. Every user process on the host counts, in any cgroup.
  let n = 0
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || pid === '2') continue
    const stat = readOr(`/proc/${pid}/stat`)
    if (stat === null) continue // gone meanwhile
    const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]
    if (ppid !== '2') n++
  }
  return n
}

function cgroupMounts() {
  // mountinfo: id parent maj:min root mountpoint opts ... - fstype source superopts
  const mounts = []
  for (const line of (readOr('/proc/self/mountinfo') ?? '').split('\n')) {
    const [pre, post] = line.split(' - ')
    if (!post) continue
    const f = pre.split(' ')
    const [fstype, , superopts] = post.split(' ')
    if (fstype === 'cgroup2') mounts.push({ v2: true, root: f[3], mountpoint: f[4] })
    else if (fstype === 'cgroup') mounts.push({ v2: false, root: f[3], mountpoint: f[4], controllers: superopts.split(',') })
  }
  return mounts
}

/**
 * The tightest pids and memory limits that apply to a host pid, found by
 * walking its cgroups (v1 and v2) up to the hierarchy root. Infinity when
 * no limit applies.
 */
export function hostCgroupLimits(pid) {
  const lines = (readOr(`/proc/${pid}/cgroup`) ?? '').split('\n').filter(Boolean)
  const mounts = cgroupMounts()
  let pids = Infinity
  let memory = Infinity
  const paths = []
  for (const line of lines) {
    const a = line.indexOf(':')
    const b = line.indexOf(':', a + 1)
    if (a < 0 || b < 0) continue
    const hid = line.slice(0, a)
    const ctrls = line.slice(a + 1, b)
    const path = line.slice(b + 1)
    const v2 = hid === '0' && ctrls === ''
    const candidates = mounts.filter((m) => (v2 ? m.v2 : !m.v2 && ctrls.split(',').every((c) => m.controllers.includes(c))))
    for (const m of candidates) {
      if (!path.startsWith(m.root === '/' ? '/' : m.root)) continue
      const rel = m.root === '/' ? path : path.slice(m.root.length)
      paths.push(`${m.v2 ? 'v2' : ctrls}:${join(m.mountpoint, rel)}`)
      let dir = join(m.mountpoint, rel)
      for (;;) {
        const p = readOr(join(dir, 'pids.max'))
        if (p && p.trim() !== 'max') pids = Math.min(pids, Number(p.trim()))
        const mem = readOr(join(dir, m.v2 ? 'memory.max' : 'memory.limit_in_bytes'))
        if (mem && mem.trim() !== 'max') {
          const n = Number(mem.trim())
          // cgroup v1 reports "no limit" as a huge page-rounded number.
          if (n < 2 ** 60) memory = Math.min(memory, n)
        }
        if (dir === m.mountpoint || dir === '/') break
        dir = join(dir, '..')
      }
    }
  }
  return { pids, memory, paths }
}

/** Parent pid of a host pid, from /proc/PID/status. */
export function hostParent(pid) {
  const status = readOr(`/proc/${pid}/status`)
  const line = status?.split('\n').find((l) => l.startsWith('PPid:'))
  return line ? Number(line.split(/\s+/)[1]) : null
}

/** Command line of a host pid, NULs as spaces. */
export function hostCmdline(pid) {
  return (readOr(`/proc/${pid}/cmdline`) ?? '').split('\0').join(' ').trim()
}

/** Nearest ancestor of pid (itself included) whose command line matches re. */
export function hostAncestor(pid, re) {
  for (let p = pid; p && p > 1; p = hostParent(p)) if (re.test(hostCmdline(p))) return p
  return null
}

/** Peak resident memory (VmHWM) of a host pid in bytes. */
export function hostPeakRss(pid) {
  const line = readOr(`/proc/${pid}/status`)?.split('\n').find((l) => l.startsWith('VmHWM:'))
  return line ? Number(line.split(/\s+/)[1]) * 1024 : null
}

/** Resets a host pid's peak RSS (VmHWM) to its current RSS. Needs root. */
export function resetPeakRss(pid) {
  writeFileSync(`/proc/${pid}/clear_refs`, '5')
}
