"""Provider clients (Stripe, M-Pesa Daraja, Airtel Money) behind one interface."""
