"""paperwork: the forms of the 2017 plan as files: PDFs out (附件2, 附件3), their signed scans back in."""
