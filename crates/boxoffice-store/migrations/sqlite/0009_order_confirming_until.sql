-- While the checkout page confirms an order's PaymentIntent at Stripe, the order carries
-- the instant until which the confirmation may still be running. A leave beacon from the
-- page, which may reach any instance, releases the hold only when no confirmation is under
-- way: this mark, read under the hold's lock, replaces an in-process set that only the
-- instance confirming could see (SPEC §12). NULL: no confirmation under way.
ALTER TABLE orders ADD COLUMN confirming_until INTEGER;
