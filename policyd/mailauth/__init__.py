"""Mail authentication at reception: SPF (spf.py)."""
