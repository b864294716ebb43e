"""The pure payment domain: money, statuses, event contracts, the state machine.

Nothing in this package imports Faust, Kafka or SQL; replay tools and tests use it as is.

* ``money``, ``status``, ``events``, ``errors``: the values, the transition table, the
  record contracts on every topic, the error tree;
* ``payment``: the aggregate (``Payment``) and what applying an input comes to (``Outcome``);
* ``state_machine``: ``apply()``, with one decision per input type;
* ``provider_events``: what a provider's status report does (the provider is the source of
  truth: late successes, failed attempts, refused cancels); ``cross_checks``: whether the
  event is about this payment at all (``Suspicious`` if not);
* ``attempts``, ``rules``: a payment's attempts and pending cancel as values; attempts per
  payment and the late-payment policy (keep / refund) a deployment chooses;
* ``refunds``, ``commands``: refund requests and outcomes; the provider commands asked for;
* ``snapshot_update``, ``step``: the typed, validated change one input makes;
* ``deadlines``, ``provider_status``, ``provider_money``: deadlines per provider and
  status, each provider's statuses mapped onto ours, each provider's wire units and limits;
* ``times``, ``references``, ``masking``: aware UTC times, payment references, log scrubbing.
"""
