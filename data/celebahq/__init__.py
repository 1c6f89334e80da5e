"""CelebA-HQ (the paper's world): ``files`` reads the CelebAMask-HQ layout and CelebA's identities and splits,
``dataset`` holds the Dataset of contour/identity pairs."""
