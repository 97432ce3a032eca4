"""What a customer is and does, as numpy: agents, purchases and dropout, rates and effects, the
population, keyed randomness and the calendar. No SimPy, no storage.
"""
