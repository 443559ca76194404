// Package signature verifies a revision's signatures as upstream
// Pantavisor does (signature.c): pvs@2, which upstream's `pvr sig` makes.
//
// A signature is any state key whose value is an object with "#spec":
// "pvs@2", "protected" and "signature" (pvr keeps them under _sigs/). It
// is a JWS with a detached payload. Its protected header names the
// algorithm (RS256, ES256, ES384, ES512), the signer's certificate chain
// (x5c; without it the device's public key, pvs/trust/pub.pem, is used)
// and, under "pvs", the keys it covers: "include" globs, then "exclude"
// globs, matched as fnmatch(3) with FNM_PATHNAME, a trailing "/**"
// standing for a directory and everything below it (FNM_LEADING_DIR).
// The payload is a JSON object of the included keys: a string value as
// it is written in the state, quoted; an object or array in canonical
// form (keys sorted, no white space), which is what pvr signs, so that a
// state printed again in another layout still verifies.
//
// The certificate chain must lead to the trust store, valid at the time
// of the check; a signer whose certificate's common name is the device's
// PV_OEM_NAME is checked against the OEM trust store instead, unless it
// covers a key of the BSP or of the OEM's own container.
//
// The work a state's signatures ask for is bounded (maxMatching,
// maxPayloads): their globs and keys are the sender's, and a state that
// asks for more than a device does is refused.
//
// Modes, as upstream's PV_SECUREBOOT_MODE: disabled checks nothing;
// lenient (the default) refuses a revision with a signature that does not
// verify; strict also refuses a revision with a key no signature covers
// (an excluded key counts as covered, as upstream has it, except a key of
// the BSP or of the OEM's container that an OEM signer excludes: it may
// not sign them, so it may not waive them); audit reports those keys but
// runs the revision.
package signature
