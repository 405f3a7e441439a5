"""The auditor's and the committee's reading: the audit log, quota and compliance reports across units."""
