"""Call one of the collection's modules in a test-bed dom0 through ansible-playbook and get its
registered result back, exactly as a user's playbook would see it."""
import json

PLAYBOOK = """\
- hosts: xen_dom0
  gather_facts: false
  tasks:
    - name: Call the module
      {module}: {args}
      register: result
      ignore_errors: true
    - name: Save the result
      ansible.builtin.copy:
        content: "{{{{ result | to_json }}}}"
        dest: "{{{{ results_dir }}}}/result.json"
        mode: "0600"
      delegate_to: localhost
      check_mode: false
"""


def call_module(runner, module, check=False, diff=False, **args):
    """The registered result of `xen.suspend.<module>` called with `args` (failed or not)."""
    run = runner.run(PLAYBOOK.format(module="xen.suspend." + module, args=json.dumps(args)),
                     check=check, diff=diff)
    if "result" not in run.results:
        raise AssertionError("the playbook did not get as far as saving the result\n%s" % run)
    result = run.results["result"]
    result["_playbook_stdout"] = run.stdout
    return result
