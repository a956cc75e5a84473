#!/usr/bin/env bash
# Ecosystem gates of the xen.suspend collection: what Galaxy, ansible-test, ansible-lint and
# AWX expect of it. Every gate runs (a failure does not stop the others); the summary lists
# each with its result and time, and the exit status is the number of failed gates.
#
#   tests/gates/run-gates.sh            all gates
#   tests/gates/run-gates.sh lint docs  only these (names as in the summary)
#
# Gates, all on the collection as `ansible-galaxy collection build` packs it (galaxy.yml's
# build_ignore decides; tests/xen, tests/xensim and the simulator-based harnesses are not in it):
#   tools      pip-installs tests/gates/requirements.txt into the project venv (once per change)
#   build      ansible-galaxy collection build, unpacked under a temporary
#              ansible_collections/xen/suspend (with galaxy.yml) for the gates below
#   changelog  antsibull-changelog lint and lint-changelog-yaml
#   sanity     ansible-test sanity --local --python <venv python> (every test; no ignore files)
#   units      ansible-test units --local --python <venv python> (tests/unit)
#   lint       ansible-lint, profile production (tests/gates/ansible-lint.yml)
#   install    ansible-galaxy collection install of the built tarball into a temporary path
#   docs       ansible-doc renders every module and every role of the installed collection
#   ee         ansible-builder introspect: the EE needs nothing but ansible-core; and the
#              example EE definition docs/execution-environment.yml is valid (ansible-builder create)
#   playbook   ansible-playbook xen.suspend.maintenance from the installed collection against
#              the simulated dom0 (tests/xensim), then every guest must run again
#
# Needs `make venv` (the project venv) and, for the playbook gate, gcc (`make deps`).
# ansible-test creates each sanity test's virtual environment and bootstraps pip in it with a
# script it downloads from ci-files.testing.ansible.com; where only PyPI is reachable the gate
# supplies tests/gates/get_pip_standin.py in its place. Those environments live under the gates'
# own HOME, build/gates/home (XEN_SUSPEND_GATES_HOME), and are reused by later runs.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
GATES="$REPO/tests/gates"
VENV=${VENV:-$REPO/.venv}
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1
GATES_HOME=${XEN_SUSPEND_GATES_HOME:-$REPO/build/gates/home}
KEEP=${XEN_SUSPEND_GATES_KEEP:-}

if [ ! -x "$PY" ]; then
    echo "run-gates: no project venv at $VENV (run: make venv)" >&2
    exit 100
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xsg.XXXXXX")
LOGS="$WORK/logs"
SIM="$WORK/sim"
STAGE_PARENT="$WORK/src"
STAGE="$STAGE_PARENT/ansible_collections/xen/suspend"
INSTALLED="$WORK/installed"
mkdir -p "$LOGS"

cleanup() {
    if [ -e "$SIM/xensim.pid" ]; then
        PYTHON="$PY" "$REPO/tests/xensim/xensimctl" stop --dir "$SIM" >/dev/null 2>&1 || true
    fi
    if [ -n "$KEEP" ]; then
        echo "run-gates: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PIP_CACHE=${PIP_CACHE_DIR:-$("$PY" -m pip cache dir 2>/dev/null || echo "$HOME/.cache/pip")}

SELECTED=" $* "
RESULTS=()
FAILED=0
TOTAL_START=$(date +%s.%N)

selected() {
    [ "$SELECTED" = "  " ] || [[ "$SELECTED" == *" $1 "* ]]
}

# gate NAME FUNCTION: run FUNCTION with its output in $LOGS/NAME.log; record PASS/FAIL and time.
gate() {
    local name=$1 fn=$2 start end secs status
    selected "$name" || return 0
    start=$(date +%s.%N)
    printf '%-10s ... ' "$name"
    # In a subshell: a gate may cd or export without affecting the others.
    if ( "$fn" ) >"$LOGS/$name.log" 2>&1; then
        status=PASS
    else
        status=FAIL
        FAILED=$((FAILED + 1))
    fi
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    echo "$status (${secs}s)"
    if [ "$status" = FAIL ]; then
        echo "---- $name: the error lines and the last lines of $LOGS/$name.log"
        # ansible-test prints its verdicts as ERROR: lines, often far above the tail
        grep -E '^(ERROR|FATAL)' "$LOGS/$name.log" | head -n 20 | sed 's/^/    /'
        echo "    ..."
        tail -n 40 "$LOGS/$name.log" | sed 's/^/    /'
        echo "----"
    fi
    RESULTS+=("$(printf '%-10s %s %6ss' "$name" "$status" "$secs")")
}

# Gates that need the built collection say so; without it they fail clearly.
need() {
    if [ ! -e "$1" ]; then
        echo "missing $1: the build gate did not run or failed"
        return 1
    fi
}

gate_tools() {
    local stamp="$VENV/.gates-installed" want
    want=$(cat "$GATES/requirements.txt" "$REPO/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "gate tools already installed ($stamp)"
    else
        "$PY" -m pip install -q --disable-pip-version-check \
            -r "$GATES/requirements.txt" -c "$REPO/requirements-dev.txt" || return 1
        echo "$want" >"$stamp"
    fi
    ansible-lint --version && antsibull-changelog --version && ansible-builder --version && ansible --version
}

gate_build() {
    rm -rf "$WORK/dist" "$STAGE_PARENT"
    (cd "$REPO" && ansible-galaxy collection build --output-path "$WORK/dist" .) || return 1
    mkdir -p "$STAGE"
    tar -xzf "$WORK"/dist/xen-suspend-*.tar.gz -C "$STAGE" || return 1
    # Back to a source tree: galaxy.yml instead of the generated manifests.
    rm -f "$STAGE/MANIFEST.json" "$STAGE/FILES.json"
    cp "$REPO/galaxy.yml" "$STAGE/galaxy.yml"
    echo "built $(ls "$WORK"/dist), $(find "$STAGE" -type f | wc -l) files"
}

gate_changelog() {
    cd "$REPO" && antsibull-changelog lint -v && antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
}

ansible_test_home() {
    # ansible-test's pip bootstrap script, cached where it looks for it (see the header).
    local pip_version cache
    pip_version=$("$PY" - <<'EOF'
import os
import re
import ansible_test
source = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
with open(source) as handle:
    print(re.search(r"pip='([0-9.]+)'", handle.read()).group(1))
EOF
    ) || return 1
    cache="$GATES_HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
    mkdir -p "$(dirname "$cache")"
    [ -f "$cache" ] || cp "$GATES/get_pip_standin.py" "$cache"
}

gate_sanity() {
    need "$STAGE/galaxy.yml" || return 1
    ansible_test_home || return 1
    cd "$STAGE" && rm -rf tests/output &&
        HOME="$GATES_HOME" PIP_CACHE_DIR="$PIP_CACHE" \
        ansible-test sanity --local --python "$PYVER" --color no
}

gate_units() {
    need "$STAGE/galaxy.yml" || return 1
    ansible_test_home || return 1
    cd "$STAGE" && HOME="$GATES_HOME" PIP_CACHE_DIR="$PIP_CACHE" \
        ansible-test units --local --python "$PYVER" --color no
}

gate_lint() {
    need "$STAGE/galaxy.yml" || return 1
    cd "$STAGE" && rm -rf tests/output &&
        HOME="$GATES_HOME" ANSIBLE_COLLECTIONS_PATH="$STAGE_PARENT" \
        ansible-lint -c "$GATES/ansible-lint.yml" --project-dir "$STAGE" --nocolor
}

gate_install() {
    need "$WORK/dist" || return 1
    rm -rf "$INSTALLED"
    ansible-galaxy collection install "$WORK"/dist/xen-suspend-*.tar.gz -p "$INSTALLED" 2>&1 | grep -v 'is not part of the configured' &&
        ANSIBLE_COLLECTIONS_PATH="$INSTALLED" ansible-galaxy collection list xen.suspend -p "$INSTALLED"
}

gate_docs() {
    need "$INSTALLED/ansible_collections/xen/suspend" || return 1
    local rc=0 kind name out err
    export ANSIBLE_COLLECTIONS_PATH="$INSTALLED"
    for kind in module role; do
        for name in $(cd "$INSTALLED/ansible_collections/xen/suspend" &&
                      if [ "$kind" = module ]; then ls plugins/modules | sed -n 's/\.py$//p'; else ls roles; fi); do
            out="$WORK/doc-$kind-$name.txt" err="$WORK/doc-$kind-$name.err"
            if ansible-doc -t "$kind" "xen.suspend.$name" >"$out" 2>"$err" &&
               [ -s "$out" ] && ! grep -q -E 'WARNING|ERROR' "$err"; then
                echo "ok   ansible-doc -t $kind xen.suspend.$name ($(wc -l <"$out") lines)"
            else
                echo "FAIL ansible-doc -t $kind xen.suspend.$name"
                cat "$err"
                rc=1
            fi
        done
    done
    # Every module and role must be listed, too.
    ansible-doc -t module -l xen.suspend && ansible-doc -t role -l xen.suspend || rc=1
    return $rc
}

gate_ee() {
    need "$INSTALLED/ansible_collections/xen/suspend" || return 1
    local out
    # The example EE definition in docs/ is valid for ansible-builder (build context only).
    ansible-builder create -f "$REPO/docs/execution-environment.yml" --context "$WORK/ee-context" || return 1
    out=$(ansible-builder introspect --sanitize "$INSTALLED") || return 1
    echo "$out"
    "$PY" - "$out" <<'EOF'
import sys
import yaml
data = yaml.safe_load(sys.argv[1].split("---", 1)[1])
extra = dict((key, value) for key, value in data.items() if value)
if extra:
    sys.exit("the execution environment would need more than ansible-core: %r" % extra)
print("execution environment dependencies: none beyond ansible-core")
EOF
}

gate_playbook() {
    need "$INSTALLED/ansible_collections/xen/suspend" || return 1
    # The dom0 is reached through the inventory only, not through a simulator environment
    # this shell may have sourced.
    unset "${!XENSIM_@}" "${!XENSTORED_@}"
    mkdir -p "$SIM"
    PYTHON="$PY" "$REPO/tests/xensim/xensimctl" start --spec "$GATES/gate-fleet.yaml" --dir "$SIM" --json \
        >"$WORK/sim-env.json" || return 1
    "$PY" - "$WORK" "$PY" <<'EOF' || return 1
import json
import os
import sys
import yaml
work, python = sys.argv[1], sys.argv[2]
env = json.load(open(os.path.join(work, "sim-env.json")))
host = {
    "ansible_connection": "local",
    "ansible_python_interpreter": python,
    "xen_suspend_become": False,
    "xen_suspend_environment": {"XENSTORED_PATH": env["XENSTORED_PATH"], "XENSIM_SOCKET": env["XENSIM_SOCKET"],
                                "LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"]},
    "host_maintenance_ledger_path": os.path.join(work, "ledger", "ledger.json"),
    "host_maintenance_xen_run_dir": env["XENSIM_RUN_DIR"],
    "fleet_suspend_controller_uuid_file": os.path.join(work, "no-controller-uuid"),
}
with open(os.path.join(work, "inventory.yml"), "w") as handle:
    yaml.safe_dump({"xen_dom0": {"hosts": {"gate-dom0": host}}}, handle)
EOF
    (cd "$WORK" && ANSIBLE_COLLECTIONS_PATH="$INSTALLED" ANSIBLE_HOME="$WORK/ansible-home" \
        ansible-playbook xen.suspend.maintenance -i inventory.yml \
        -e "host_maintenance_tasks_file=$GATES/maintenance-tasks.yml") || return 1
    # After the run: every guest runs again and the ledger is empty.
    PYTHON="$PY" "$REPO/tests/xensim/xensimctl" list --dir "$SIM" --json >"$WORK/sim-after.json" || return 1
    PYTHON="$PY" "$REPO/tests/xensim/xensimctl" stop --dir "$SIM" || return 1
    "$PY" - "$WORK" <<'EOF'
import json
import os
import sys
work = sys.argv[1]
domains = json.load(open(os.path.join(work, "sim-after.json")))
guests = [d for d in domains if d["domid"] != 0]
stopped = [d["name"] for d in guests if d.get("shutdown_code") is not None or d.get("paused")]
with open(os.path.join(work, "ledger", "ledger.json")) as handle:
    entries = json.load(handle)["entries"]
resumed = sorted(d["name"] for d in guests if d.get("counters", {}).get("suspends") or
                 d.get("counters", {}).get("resumes_unnoticed"))
print("guests after the run: %s; suspended and resumed: %s; ledger entries: %d"
      % (", ".join(d["name"] for d in guests), ", ".join(resumed), len(entries)))
if stopped or entries or len(resumed) != 5:
    sys.exit("not every guest was suspended and resumed: stopped=%r ledger=%r" % (stopped, entries))
EOF
}

echo "xen.suspend gates (python $PYVER, $(ansible --version 2>/dev/null | head -1)); logs in $LOGS"
gate tools gate_tools
gate build gate_build
gate changelog gate_changelog
gate sanity gate_sanity
gate units gate_units
gate lint gate_lint
gate install gate_install
gate docs gate_docs
gate ee gate_ee
gate playbook gate_playbook

TOTAL_END=$(date +%s.%N)
echo
echo "gate       result   time"
for line in "${RESULTS[@]}"; do echo "$line"; done
awk -v a="$TOTAL_START" -v b="$TOTAL_END" -v f="$FAILED" \
    'BEGIN { printf "%d gate(s) failed, %.1fs in all\n", f, b - a }'
if [ "$FAILED" -gt 0 ] && [ -z "$KEEP" ]; then
    echo "(set XEN_SUSPEND_GATES_KEEP=1 to keep the logs and work tree)"
fi
exit "$FAILED"
