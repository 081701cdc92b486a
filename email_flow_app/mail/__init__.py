"""Pure mail logic: parse, sanitize, threading keys, loop rules, compose.

Nothing here imports frappe or does I/O.
"""
