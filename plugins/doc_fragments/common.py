# -*- coding: utf-8 -*-
# Copyright (c) xen.suspend contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


class ModuleDocFragment(object):

    # One-to-one with plugins/module_utils/_argument_spec.py common_argument_spec().
    DOCUMENTATION = r'''
options:
  ledger:
    description:
      - Absolute path of the ledger on the dom0 that records which domains this collection
        suspended. A relative path is refused (it would depend on the module's working directory).
      - An entry is written before a suspend request is sent and removed after a verified resume,
        so that M(xen.suspend.domain_resumed) brings back exactly the domains that were suspended.
      - The directory is created with mode V(0700) and the file is written with mode V(0600),
        atomically. A corrupt or truncated ledger is an error and is never replaced automatically.
    type: path
    default: /var/lib/xen-suspend/ledger.json
  xen_run_dir:
    description:
      - Xen's run directory, where libxl keeps the per-domain suspend lock files
        C(suspend-evtchn-<domid>.lock) that C(xl save) and C(xl migrate) also take.
      - Defaults to V(/run/xen) when that directory exists, else V(/var/run/xen).
    type: path
  xenstore_timeout:
    description:
      - Seconds to wait for the reply to any single xenstore request before failing.
      - Protects against a xenstored that stops answering or drops the connection.
    type: float
    default: 10.0
  protected:
    description:
      - Domains that must never be touched, as names, domids, UUIDs or shell patterns on names.
      - Naming a protected domain explicitly in O(domains) is an error; a pattern in O(domains) that
        matches a protected domain leaves it out and reports it as skipped.
      - Dom0 and the xenstore domain are always protected.
    type: list
    elements: str
    default: []
notes:
  - The modules run on the Xen dom0 as root and talk to the hypervisor directly through
    libxenctrl, libxenguest and libxenevtchn (loaded with cffi in ABI mode, exact sonames of the
    running Xen version) and to xenstored through pyxs.
  - The xenstored socket is taken from E(XENSTORED_PATH), else E(XENSTORED_RUNDIR)C(/socket), else
    C(/var/run/xenstored/socket); without a socket the xenbus device C(/dev/xen/xenbus) is used.
  - When the Python interpreter the module runs under lacks cffi or pyxs (for example a
    virtualenv as C(ansible_python_interpreter)), the module runs itself once more under the dom0's
    system Python (C(/usr/bin/python3), C(/usr/libexec/platform-python), ...) if that one has both.
requirements:
  - Python 3.8 or later on the dom0
  - cffi (Debian package C(python3-cffi))
  - pyxs 0.4.1 or later (Debian package C(python3-pyxs))
  - the Xen libraries of the running hypervisor, libxenctrl.so.4.<minor>, libxenguest.so.4.<minor> and
    libxenevtchn.so.1 (Debian packages C(libxenmisc4.<minor>) and C(libxenevtchn1)); Xen 4.14 to 4.22
'''

    ACTIONGROUP = r'''
attributes:
  action_group:
    description: Use C(group/xen.suspend.suspend) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - xen.suspend.suspend
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
'''

    # _argument_spec.service_domains_argument_spec()
    SERVICE_DOMAINS = r'''
options:
  allow_service_domains:
    description:
      - Service domains that may be acted on anyway, as names, domids, UUIDs or shell patterns on
        names.
      - A service domain serves other domains, and suspending it takes their devices away while they
        run. The modules find them in xenstore and refuse them like dom0. These are device-model stub
        domains (C(~/target) exists, or another domain's C(~/image/device-model-domid) names them)
        and driver domains (C(~/backend) has children). Only dom0 can write these nodes.
      - A selector here that matches no service domain only warns.
    type: list
    elements: str
    default: []
'''

    # _argument_spec.toolstack_argument_spec()
    TOOLSTACK = r'''
options:
  allow_other_toolstack:
    description:
      - Act even though another toolstack manages the host or the domain.
      - A host managed by XAPI (XenServer, XCP-ng) is refused by default. Evidence is
        C(/etc/xensource-inventory) or a running C(xapi) process.
      - Domains that libvirt's libxl driver runs are refused by default. They are listed in
        C(/run/libvirt/libxl/<name>.xml). When C(virtxend) runs but that directory cannot be read,
        the whole host is refused.
      - The refusal happens before anything is touched (error kind C(other_toolstack), or
        C(invalid_target) for a domain named explicitly).
    type: bool
    default: false
'''

    # _argument_spec.save_dir_argument_spec()
    SAVE_DIR = r'''
options:
  save_dir:
    description:
      - Absolute path of the directory on the dom0 that holds the guests' save images, one
        C(<uuid>.xlsave) file per guest (C(<uuid>.xlsave.part) while it is written).
      - An image is the guest's whole memory. The directory is created with mode V(0700) and
        must be owned by root, must not be a symbolic link and must not be writable by group or
        others; the images are written with mode V(0600).
      - Do not point it at xendomains' own C(XENDOMAINS_SAVE) directory (xendomains would restore
        and delete the images at boot).
    type: path
    default: /var/lib/xen-suspend/save
'''
