"""xensim: a simulated Xen dom0 (hypervisor model, xenstored, shim libraries)
used to test the xen.suspend collection without a real hypervisor.

Layout (one concern per module):

* ``loop``        single-threaded selectors event loop with timers
* ``xenconst``    constants and struct layouts from Xen's public headers
* ``xswire``      xenstore wire codec (xs_wire.h)
* ``store``       xenstore tree, permissions and transactions
* ``watches``     watch registry and event routing
* ``xenstored``   the xenstored socket server and domain bookkeeping
* ``hypervisor``  domains, event channels, shutdown/resume semantics
* ``toolstack``   what libxl writes to xenstore when it builds/destroys a domain
* ``guests``      guest behaviours (Linux PV, XenLinux, Windows, hostile, ...)
* ``rpcserver``   the server end of the C shim libraries
* ``admin``       JSON control socket used by the CLI
* ``fleet``       fleet spec parsing
* ``xlsim``       the simulator's side of the simulated ``xl`` (``bin/xl``)
* ``saveimage``   the xl save file format (writer and reader)
* ``sim``         wires everything together
* ``cli``         ``python3 -m xensim start|run|list|fault|stop``
"""

__version__ = "0.1.0"
