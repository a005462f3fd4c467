"""Physics-informed neural network (PINN) reconstruction of ptychography data, in TensorFlow/Keras.

``physics`` holds the differentiable forward model (the same conventions as :mod:`ptylib.ptycho.forward`)
and the gs = 2 overlap constraint; ``network`` the encoder–decoder; ``data`` turns a contract dataset
into groups; ``train`` fits a PINN (Poisson NLL through the physics) or the supervised baseline (against
the ground-truth patches); ``store`` saves and loads a model with its JSON sidecar; ``infer`` predicts
and stitches. TensorFlow is imported only by the modules that need it.
"""
