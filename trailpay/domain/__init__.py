"""The pure payment domain: money, statuses, event contracts, the state machine.

Nothing in this package imports Faust, Kafka or SQL; replay tools and tests use it as is.

* ``money``, ``status``, ``events``, ``errors``: the values, the transition table, the
  record contracts on every topic, the error tree;
* ``payment``: the aggregate (``Payment``) and what applying an input comes to (``Outcome``);
* ``state_machine``: ``apply()``, with one decision per input type;
* ``refunds``, ``commands``: refund requests and outcomes; the provider commands asked for;
* ``snapshot_update``, ``step``: the typed, validated change one input makes;
* ``deadlines``, ``provider_status``, ``references``, ``masking``: deadline policy, each
  provider's statuses mapped onto ours, payment references, log scrubbing.
"""
