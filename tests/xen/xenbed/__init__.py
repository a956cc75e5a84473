"""Real Xen test bed: a Xen hypervisor with a Debian dom0 and Linux PV guests inside QEMU.

images  builds or finds the cached boot artifacts of a flavour (tests/xen/image/build-image.sh)
dom0    boots one of them in QEMU, reaches dom0 over SSH, stops it on every exit path
guests  creates test guests in that dom0 and reads their xenstore state
"""
