# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the repository importable as ``ansible_collections.xen.suspend`` without copying it.

When the checkout already lives at .../ansible_collections/xen/suspend that path is used;
otherwise a temporary directory gets ``ansible_collections/xen/suspend`` as a symlink to the
repository root and goes on sys.path. This runs at import time, before test modules import
the collection. The helpers of the unit tests (xen_fakes) live next to this file.
"""

import atexit
import os
import shutil
import sys
import tempfile

REPO_ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
UNIT_DIR = os.path.dirname(os.path.abspath(__file__))


def _collections_parent():
    parts = REPO_ROOT.split(os.sep)
    if len(parts) >= 3 and parts[-3:-1] == ["ansible_collections", "xen"] and parts[-1] == "suspend":
        return os.sep.join(parts[:-3])
    base = tempfile.mkdtemp(prefix="xen-suspend-unit-")
    namespace = os.path.join(base, "ansible_collections", "xen")
    os.makedirs(namespace)
    os.symlink(REPO_ROOT, os.path.join(namespace, "suspend"))
    atexit.register(shutil.rmtree, base, True)
    return base


COLLECTIONS_PARENT = _collections_parent()
if COLLECTIONS_PARENT not in sys.path:
    sys.path.insert(0, COLLECTIONS_PARENT)
if UNIT_DIR not in sys.path:
    sys.path.insert(0, UNIT_DIR)
