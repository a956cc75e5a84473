# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Documentation blocks parse, and match the argument specs (the shared fragment one-to-one)."""

import os

import pytest
import yaml

from ansible_collections.xen.suspend.plugins.doc_fragments.attributes import ModuleDocFragment as AttributesFragment
from ansible_collections.xen.suspend.plugins.doc_fragments.common import ModuleDocFragment
from ansible_collections.xen.suspend.plugins.module_utils._argument_spec import common_argument_spec
from ansible_collections.xen.suspend.plugins.modules import (
    domain_info, domain_restored, domain_resumed, domain_saved, domain_suspended)

MODULES = [domain_suspended, domain_resumed, domain_info, domain_saved, domain_restored]
SAFETY_FRAGMENTS = {"xen.suspend.common.service_domains": "SERVICE_DOMAINS",
                    "xen.suspend.common.toolstack": "TOOLSTACK",
                    "xen.suspend.common.save_dir": "SAVE_DIR"}
REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))


def same_option(doc, spec, name):
    assert doc.get("type", "str") == spec.get("type", "str"), name
    assert doc.get("elements") == spec.get("elements"), name
    assert bool(doc.get("required", False)) == bool(spec.get("required", False)), name
    assert doc.get("default") == spec.get("default"), name
    assert doc.get("choices") == spec.get("choices"), name
    assert doc.get("description"), name


def test_shared_fragment_is_one_to_one_with_shared_spec():
    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = common_argument_spec()
    assert set(options) == set(spec)
    for name in spec:
        same_option(options[name], spec[name], name)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_module_docs_match_argument_spec(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    name = module.__name__.rsplit(".", 1)[-1]
    assert doc["module"] == name
    assert not doc["short_description"].endswith(".")
    fragments = doc["extends_documentation_fragment"]
    assert fragments[:2] == ["xen.suspend.common", "xen.suspend.common.actiongroup"]
    assert fragments[-1:] in (["xen.suspend.attributes"], ["xen.suspend.attributes.info_module"])
    options = dict(doc["options"])
    for fragment in fragments[2:-1]:  # options shared by some modules, documented once
        assert fragment in SAFETY_FRAGMENTS, fragment
        shared = yaml.safe_load(getattr(ModuleDocFragment, SAFETY_FRAGMENTS[fragment]))["options"]
        assert not set(shared) & set(options)
        options.update(shared)
    spec = module.argument_spec()
    assert set(options) == set(spec)
    assert not set(spec) & set(common_argument_spec())
    for option in spec:
        same_option(options[option], spec[option], option)
    attributes = dict(yaml.safe_load(getattr(AttributesFragment, "INFO_MODULE" if name == "domain_info" else "DOCUMENTATION"))["attributes"])
    for key, value in (doc.get("attributes") or {}).items():
        attributes[key] = dict(attributes.get(key, {}), **value)
    assert attributes["check_mode"]["support"] == "full" and attributes["check_mode"]["description"]
    assert attributes["diff_mode"]["support"] in ("full", "N/A") and attributes["diff_mode"]["description"]
    examples = yaml.safe_load(module.EXAMPLES)
    assert all(("xen.suspend." + name) in task or "ansible.builtin.debug" in task for task in examples)
    returns = yaml.safe_load(module.RETURN)
    assert "domains" in returns
    assert "failed" not in returns  # Ansible's own key


def test_action_group_lists_every_module():
    with open(os.path.join(REPO, "meta", "runtime.yml")) as handle:
        runtime = yaml.safe_load(handle)
    assert runtime["requires_ansible"] == ">=2.17.0,<2.20.0"  # the README's ansible-core 2.17-2.19
    assert sorted(runtime["action_groups"]["suspend"]) == sorted(
        m.__name__.rsplit(".", 1)[-1] for m in MODULES)
    fragment = yaml.safe_load(ModuleDocFragment.ACTIONGROUP)
    assert fragment["attributes"]["action_group"]["membership"] == ["xen.suspend.suspend"]
