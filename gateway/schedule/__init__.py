"""Regulated send windows judged in the recipient's local time.

`zones` maps a phone number to the time zones its holder may be in; `window`
parses a policy's `allow:` block and answers whether a window is open at an
instant and when it next opens. Everything here is pure: instants come in as
arguments, nothing reads the clock.
"""
