"""Mail authentication at reception: SPF (spf.py), DKIM verification
(dkim.py), Authentication-Results (results.py)."""
