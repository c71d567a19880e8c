"""Detection quality of incidents against labelled traffic: host level and event level.

``labels`` (what the labels say) and ``metrics`` (incidents against them) are pure:
labelled events and incidents in, counts out. ``run`` is the edge that finds captures,
reads label files and runs the pipeline per capture in a temporary store (``furui eval``);
``plot`` draws the result. The definitions, which ``docs/detection.md`` states in prose:

* **Labels.** A label text starting with ``Malicious`` is malicious, ``Benign`` benign;
  ``Background``, ``Unknown``, an empty or absent label are *unknown* (Stratosphere's
  convention, ``correlator.ml.dataset.LABELS``) and count for nothing.
* **Attacked, not infected.** A malicious event whose detailed label matches the attack
  pattern (Stratosphere's ``External-Attack-to-Device``) records an attack *on* a device;
  it never makes a host infected.
* **Host classes** (internal hosts only, as incidents are only about internal hosts):
  *infected* originates at least one malicious event that is not such an attack;
  *attacked* is not infected and is the internal end of at least one malicious event
  (received, or an attack on it); *benign* has benign events and no malicious one;
  *unknown* has only unknown ones, or appears only in incidents. Infected hosts are the
  positives; attacked and benign hosts the negatives; unknown hosts are left out.
* **Alerting.** A host is alerted when its strongest incident is ``high`` or
  ``critical``; an incident of lower severity is shown in the confusion but is not an alert.
* **Flows** (event level). Events sharing a Zeek uid are one flow (conn, http and ssl
  records of one connection); an event without a uid is a flow of its own. A flow is
  malicious if any of its events is, else benign if any is, else unknown. A flow is
  *referenced* by an incident whose evidence names its uid or one of its event ids.
  Event recall is the share of malicious flows referenced; event precision the share of
  referenced labelled flows that are malicious.
"""
