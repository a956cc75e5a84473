"""Fleet spec: which guests to boot.  YAML (needs PyYAML) or JSON.

    quiesce_ms: 200        # defaults for every group (all optional)
    jitter_ms: 50
    heartbeat_ms: 1000
    memory_mb: 1024
    vcpus: 1
    dying_ms: 50           # how long a destroyed domain stays "dying"
    resume_ms: 0           # a guest's own resume after xc_domain_resume (devices back, first
    resume_jitter_ms: 0    #   heartbeat): real bed 70-700 ms = 385 +- 315 (per group too)
    resume_hypercall_ms: 0         # xc_domain_resume's latency for its caller: real bed
    resume_hypercall_jitter_ms: 0  #   ("resume" phase) 12-58 ms = 35 +- 23; overlaps
    domctl_lock_us: 0      # of which Xen's global domctl lock is held (serialised)
    seed: 1                # RNG seed for jitter
    xl:                    # the simulated xl (bin/xl, see xlsim.py)
      suspend_timeout_ms: 60000   # libxl's wait for the guest (xl's 60 s)
      pages_per_mib: 1            # save image size: 4 KiB pages per MiB of guest memory
      log_dir: DIR/log/xen        # where xl-<name>.log go (real xl: /var/log/xen)
      host_memory_mb: 262144      # `xl info` total_memory; free = total - the guests' memory
    guests:
      - behaviour: linux-pv
        count: 450
        name: web          # names web-1 .. web-450 (default: the behaviour);
                           # a single guest with a name gets exactly that name
      - behaviour: slow
        count: 2
        quiesce_ms: 5000   # any default can be overridden per group
        params: {ack_delay_ms: 1000}
      - {behaviour: hostile, params: {evtchn: negative, rewrite: 5}}
      - {behaviour: linux-pv, name: db, xl_faults: {enospc_after: 100000}}

``guests`` may also be a mapping ``{behaviour: count}`` or
``{behaviour: {count: N, ...}}``.
"""

import json

from .guests import BEHAVIOURS

GROUP_DEFAULTS = {"quiesce_ms": 200, "jitter_ms": 50, "heartbeat_ms": 1000,
                  "memory_mb": 1024, "vcpus": 1, "resume_ms": 0, "resume_jitter_ms": 0}
# What xc_domain_resume costs (see hypervisor.Hypervisor): the caller's latency, drawn per call
# (overlaps between callers), and the hypervisor's domctl-lock section (serialised).
HYPERVISOR_DEFAULTS = {"resume_hypercall_ms": 0, "resume_hypercall_jitter_ms": 0,
                       "domctl_lock_us": 0}
TOP_KEYS = set(GROUP_DEFAULTS) | set(HYPERVISOR_DEFAULTS) | {"guests", "dying_ms", "seed", "xl"}
GROUP_KEYS = set(GROUP_DEFAULTS) | {"behaviour", "behavior", "count", "name", "params", "xl_faults"}
XL_KEYS = {"suspend_timeout_ms", "pages_per_mib", "log_dir", "host_memory_mb"}


class SpecError(ValueError):
    pass


def load(path):
    with open(path) as f:
        text = f.read()
    return parse(text)


def parse(text):
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except ValueError:
            raise SpecError("PyYAML is not installed; write the spec as JSON or install PyYAML")
    return normalise(data or {})


def _num(v, key, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise SpecError("%s: %s must be a non-negative number" % (where, key))
    return v


def normalise_group(g, top, where="group"):
    if not isinstance(g, dict):
        raise SpecError("%s: must be a mapping" % where)
    unknown = set(g) - GROUP_KEYS
    if unknown:
        raise SpecError("%s: unknown keys %s" % (where, sorted(unknown)))
    beh = g.get("behaviour", g.get("behavior"))
    if beh not in BEHAVIOURS:
        raise SpecError("%s: unknown behaviour %r (known: %s)" % (where, beh, ", ".join(sorted(BEHAVIOURS))))
    cls = BEHAVIOURS[beh]
    out = {"behaviour": beh, "count": int(_num(g.get("count", 1), "count", where)),
           "name": str(g["name"]) if g.get("name") else None,
           "params": dict(g.get("params") or {})}
    if g.get("xl_faults"):
        from .xlsim import check_faults
        try:
            out["xl_faults"] = check_faults(g["xl_faults"], "%s: xl_faults" % where)
        except ValueError as e:
            raise SpecError(str(e))
    for k, dv in GROUP_DEFAULTS.items():
        out[k] = _num(g.get(k, top.get(k, dv)), k, where)
    dq = getattr(cls, "default_quiesce", None)
    if dq and "quiesce_ms" not in g:
        out["quiesce_ms"] = dq[0]
        if "jitter_ms" not in g:
            out["jitter_ms"] = dq[1]
    return out


def normalise(data):
    if not isinstance(data, dict):
        raise SpecError("spec must be a mapping")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise SpecError("unknown top-level keys %s" % sorted(unknown))
    top = {k: data[k] for k in GROUP_DEFAULTS if k in data}
    guests = data.get("guests") or []
    if isinstance(guests, dict):
        lst = []
        for beh, v in guests.items():
            if isinstance(v, dict):
                lst.append(dict(v, behaviour=beh))
            else:
                lst.append({"behaviour": beh, "count": v})
        guests = lst
    if not isinstance(guests, list):
        raise SpecError("guests must be a list or a mapping")
    groups = [normalise_group(g, top, "guests[%d]" % i) for i, g in enumerate(guests)]
    xl = data.get("xl") or {}
    if not isinstance(xl, dict) or set(xl) - XL_KEYS:
        raise SpecError("xl: must be a mapping with keys among %s" % sorted(XL_KEYS))
    for k in ("suspend_timeout_ms", "pages_per_mib", "host_memory_mb"):
        if k in xl:
            _num(xl[k], k, "xl")
    out = {
        "xl": dict(xl),
        "dying_ms": _num(data.get("dying_ms", 50), "dying_ms", "spec"),
        "seed": data.get("seed"),
        "defaults": dict(GROUP_DEFAULTS, **top),
        "groups": groups,
    }
    for key, default in HYPERVISOR_DEFAULTS.items():
        out[key] = _num(data.get(key, default), key, "spec")
    return out
