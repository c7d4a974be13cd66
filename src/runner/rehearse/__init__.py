"""Rehearsals: the release's own plan, scripts and smoke tests run on the local BuildKit with declared
substitutions only (stand-in bases and official images, a source mirror, published artifacts for
device compiles), so a defect in a rendered script shows before a release. Sits on the engines; the
faces call it. May import model, compose, verify, release and engines; never ui or the faces."""
