"""Mail authentication at reception: SPF (spf.py), Authentication-Results
(results.py)."""
