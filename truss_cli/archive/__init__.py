"""Model archives: how a model directory travels from `truss push` to a control plane.

Neutral ground between the two sides: the client packs (`pack`), the control plane unpacks
(`unpack`, taking the contents it already holds from its blob store, `controlplane.store.blobs`),
and neither imports the other's room.
The layout and the limits both sides agree on are in `format`.
"""
