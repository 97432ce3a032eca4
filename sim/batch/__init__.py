"""A month as Arrow tables: the four tables' schemas, built from the shards' arrays.
"""
