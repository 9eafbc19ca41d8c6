"""Mail authentication at reception: SPF (spf.py), DKIM verification
(dkim.py) and signing (dkim_sign.py), ARC verification (arc.py), DMARC
(dmarc.py), Authentication-Results (results.py)."""
