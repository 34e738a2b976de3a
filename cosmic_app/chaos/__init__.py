"""The fault matrix: every processor under every fault, verified on committed output.

Start with :mod:`.cell` (a cell's run: seeded input, processes, fault events,
recovery timing), then :mod:`.verify` (lost / duplicated / out of order per
key), the rows (:mod:`.physics`, :mod:`.stores`, :mod:`.bodies`, :mod:`.living`,
:mod:`.gateway`), :mod:`.matrix` (which cells exist) and :mod:`.table` (the
printout of ``cosmic chaos run``).
"""
