"""The use cases of compliance, one module per part of the domain (each takes a session and plain
values — an ``Actor``, a ``Who``, schemas, bytes — and never commits; the boundary does):

* :mod:`.findings` — findings: create, notify, fix, retest, close, overdue, reminders;
* :mod:`.notices` — authority notices (通报): entering, confirming, assigning, reading;
* :mod:`.scans` — Nmap reports: violations raised, kept or resolved;
* :mod:`.violations` — reading violations, and the shutdown of a violating VM;
* :mod:`.exemptions` — the center's approval of a service on a VM;
* :mod:`.deadlines` — deadlines by severity, and as notices word them;
* :mod:`.targets` — the VM or unit a notice is about;
* :mod:`.mails` — the e-mails all of them send.

The routes over them are :mod:`vmportal.compliance.api`, mirrored module for module.
"""
