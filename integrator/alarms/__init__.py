"""Alarms: conditions on a flow's runs, their state in the store, one evaluator at a time (a
lease), and the notifiers that tell people (a JSON webhook, email over SMTP).

=============  ==================================================================
``config``      ``alarms:`` of a flow file and ``notifiers:`` of config.yaml, checked
                (light: ``validate`` imports it)
``conditions``  what each condition measures, from the runs and the journal
``store``       the alarm tables and the lease (``state/schema.py``: ``alarm_states``,
                ``alarm_notices``, ``leases``)
``notify``      the webhook and email notifiers
``engine``      one evaluation: the lease, each alarm's new state, the notices
=============  ==================================================================

What the console reads: :func:`integrator.alarms.store.AlarmStore.states` (the current state of
every alarm, per flow) and :meth:`~integrator.alarms.store.AlarmStore.notices` (recent notices).
"""

from __future__ import annotations
