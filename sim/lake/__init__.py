"""The lake: the only Delta writer. Monthly commits exactly once, engine state, status, the lock and
maintenance.
"""
