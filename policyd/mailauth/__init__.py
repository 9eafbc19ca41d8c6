"""Mail authentication at reception: SPF (spf.py), DKIM verification
(dkim.py), DMARC (dmarc.py), Authentication-Results (results.py)."""
