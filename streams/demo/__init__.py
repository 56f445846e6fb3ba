"""`lettingo demo`: the whole loop on a dataset, live, ending in a report under runs/<timestamp>/."""
