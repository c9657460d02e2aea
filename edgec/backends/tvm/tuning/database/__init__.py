"""What compile reads: the tuning database directory (`store`) and applying its winners (`apply`).
Never imports the search."""
