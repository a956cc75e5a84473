# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for the get-pip.py that ansible-test downloads from ci-files.testing.ansible.com.

ansible-test creates each sanity/units virtual environment without pip and bootstraps pip
with that script; it is cached as ~/.ansible/test/cache/get_pip_<version>.py, and a file
placed there is used instead of the download (ansible-test says so when the download fails).
Where only PyPI is reachable, run-gates.sh places this script there, under a HOME of its own:
it installs the interpreter's bundled pip (ensurepip) and then the requested pip from PyPI.
Called as ``python get_pip.py [pip options] pip==X [--no-setuptools] [--no-wheel]``.
"""

import subprocess
import sys

GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
