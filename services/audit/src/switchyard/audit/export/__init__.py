"""SIEM export: ledger entries, in sequence order, to syslog (CEF/LEEF/JSON over TCP or TLS), Splunk HEC or
JSON Lines files, resumable from a durable position. Run it as `python -m switchyard.audit.export`."""
