"""Pure decisions: actions, status patches, callbacks, seals, classes, schedules, layout presets, the backoff.

No I/O and no clock of their own: most behaviour is tested here without any server.
"""
