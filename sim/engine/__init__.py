"""The SimPy timeline: one shard's month (``month``), each customer's own process (``customer``),
the coordinator's step (``step``), and the labels and daily metrics read off the month's log.
"""
