"""Authentication: password hashing, credential checkers, tokens, OTP, throttling."""
