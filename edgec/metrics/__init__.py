"""Task metrics shared by the zoo and the report (numpy only)."""
