"""Analysis of churnsim lakes: reads Delta tables only, never the engine."""
