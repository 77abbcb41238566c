//! Image records.

use std::time::SystemTime;

use async_trait::async_trait;

use super::MemoryStore;
use crate::error::{Error, Result};
use crate::image::{apply_image_paths, Image, ImageStore};

#[async_trait]
impl ImageStore for MemoryStore {
    async fn get_image(&self, name: &str) -> Result<Image> {
        self.lock()
            .images
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("image {name}")))
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.lock().images.values().cloned().collect())
    }

    async fn create_image(&self, mut image: Image) -> Result<Image> {
        if image.name.is_empty() {
            return Err(Error::InvalidArgument("empty image name".into()));
        }
        let mut st = self.lock();
        if st.images.contains_key(&image.name) {
            return Err(Error::AlreadyExists(format!("image {}", image.name)));
        }
        let now = SystemTime::now();
        image.created_at = now;
        image.updated_at = now;
        st.images.insert(image.name.clone(), image.clone());
        Ok(image)
    }

    async fn update_image(&self, image: Image, fieldpaths: &[String]) -> Result<Image> {
        let mut st = self.lock();
        let cur = st
            .images
            .get_mut(&image.name)
            .ok_or_else(|| Error::NotFound(format!("image {}", image.name)))?;
        let updated = apply_image_paths(cur, &image, fieldpaths)?;
        *cur = updated.clone();
        Ok(updated)
    }

    async fn delete_image(&self, name: &str) -> Result<()> {
        self.lock()
            .images
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("image {name}")))
    }
}
