"""A month as Arrow tables: the five tables' schemas, built from the shards' arrays.
"""
