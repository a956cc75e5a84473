# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The AWX surveys of docs/awx-project ask for variables the roles of their mode really read,
with defaults the roles accept: a survey of the wrong mode (fleet_suspend_* in a save job, a
suspend timeout given to a save) would be silently ignored or would kill large saves."""

import json
import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT = os.path.join(REPO, "docs", "awx-project")
# Variables the playbooks read outside the roles' argument specs.
PLAYBOOK_VARIABLES = {"xen_suspend_hosts"}
MODES = {
    "survey.json": ["host_maintenance", "fleet_suspend", "fleet_resume"],
    "survey-save-reboot.json": ["host_maintenance", "fleet_save", "fleet_restore"],
}


def options(role):
    with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml")) as handle:
        return yaml.safe_load(handle)["argument_specs"]["main"]["options"]


def role_default(role, name):
    with open(os.path.join(REPO, "roles", role, "defaults", "main.yml")) as handle:
        return yaml.safe_load(handle).get(name)


def survey(name):
    with open(os.path.join(PROJECT, name)) as handle:
        return json.load(handle)["spec"]


@pytest.mark.parametrize("name", sorted(MODES))
def test_every_survey_question_is_an_option_of_a_role_of_its_mode(name):
    roles = MODES[name]
    known = dict((option, (role, spec)) for role in roles for option, spec in options(role).items())
    for question in survey(name):
        variable = question["variable"]
        assert variable in known or variable in PLAYBOOK_VARIABLES, (name, variable)
        if variable not in known:
            continue
        role, spec = known[variable]
        if question["type"] == "integer":
            assert spec["type"] in ("int", "float"), (name, variable, spec["type"])
            assert question["min"] <= question["default"] <= question["max"], (name, variable)
        if question["type"] == "multiplechoice" and spec["type"] == "bool":
            assert set(question["choices"].split("\n")) == {"true", "false"}, (name, variable)


def test_the_save_survey_asks_for_the_save_not_the_suspend():
    questions = dict((question["variable"], question) for question in survey("survey-save-reboot.json"))
    assert not [variable for variable in questions if variable.startswith(("fleet_suspend_", "fleet_resume_"))]
    for variable in ("fleet_save_include", "fleet_save_exclude", "fleet_save_protected",
                     "host_maintenance_reboot_allow_running", "fleet_save_timeout", "fleet_restore_timeout"):
        assert variable in questions, variable
    # The save's timeout is the role's (writing a guest's memory to disk), not a suspend's 60 s.
    assert questions["fleet_save_timeout"]["default"] == role_default("fleet_save", "fleet_save_timeout") == 600
    assert questions["fleet_restore_timeout"]["default"] == role_default("fleet_restore", "fleet_restore_timeout")
    assert questions["fleet_save_parallel"]["default"] == role_default("fleet_save", "fleet_save_parallel")
    assert questions["host_maintenance_reboot_timeout"]["default"] == role_default(
        "host_maintenance", "host_maintenance_reboot_timeout")
    allowed = questions["host_maintenance_reboot_allow_running"]["default"].split(",")
    assert allowed == role_default("host_maintenance", "host_maintenance_reboot_allow_running")
