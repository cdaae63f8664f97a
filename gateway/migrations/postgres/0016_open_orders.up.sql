-- The orders not in a final state, by store and feed number: what a
-- terminal or a board asks for when it starts (the open queue) and what a
-- metrics scrape counts, read without walking a store's whole history.
CREATE INDEX orders_open ON orders (store_id, seq)
    WHERE status IN ('created', 'accepted', 'ready');
-- The few platform orders an unconfirmed-order alert went out for.
CREATE INDEX third_party_orders_alerted ON third_party_orders (alerted_at)
    WHERE alerted_at > 0;
