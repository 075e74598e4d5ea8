"""Acme's job handlers: an example of a handler package (see README.md). The executor imports
``acme_jobs.handlers`` through the ``jobservice.handlers`` entry point."""
