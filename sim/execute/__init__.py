"""Running months: the local and Spark runners, the runs into a lake and in memory, and solving the
scenario's targets.
"""
