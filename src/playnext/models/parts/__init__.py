"""What the sequence models are built from, one job per module.

    net          SequenceNet: what every sequence network gives its recommender and serving
    actions      typed events as inputs: the event vocabulary, action ids, the action embedding
    targets      which events are next-item targets, and how much each weighs
    content      the item content tower: items unseen in training scored from their metadata
    repeat       the learned re-listen bonus on the input window's own items
    buckets      rows of similar length together: bucketed training batches, scoring chunks
    sparse       sparse item-table gradients for catalogs too large for dense Adam
    warm_start   per-item and per-user tables grown in place for a warm start

`SequenceRecommender` (models/sequence.py) composes the features its config turns on; SASRec,
HSTU and GRU4Rec build only their own blocks. Parts import no model, so any model can use them.
"""
