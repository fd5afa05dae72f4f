"""Send windows and recipient time zones."""
